"""The public face of the test server: `EmpowerIDTestServer`, its configuration, start and
stop, and the methods and properties tests use to issue, revoke and expire tokens, queue
faults and read what the server received.

It delegates the rest: HTTP to `eid_auth.testing._http`, its grants, tokens, counters and
logs to `eid_auth.testing._state`, and each request to its endpoint in
`eid_auth.testing.endpoints` (and, at the token endpoint, to its grant in
`eid_auth.testing.grants`). Everything is standard library only, so users can run it in
their own tests without extra dependencies, except the signing of ID tokens and the
checking of signed assertions (joserfc, a dependency of eid-auth), loaded when first
needed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from eid_auth.testing import endpoints
from eid_auth.testing._faults import FaultSpec
from eid_auth.testing._http import LoopbackHTTPServer
from eid_auth.testing._id_token import issue_id_token, sign
from eid_auth.testing._messages import Answer, RecordedRequest
from eid_auth.testing._state import ServerState, TestUser, new_refresh_token
from eid_auth.testing.endpoints import token
from eid_auth.testing.endpoints.device_authorization import DeviceAuthorization
from eid_auth.testing.grants import device_code

__all__ = ["EmpowerIDTestServer", "FaultSpec", "RecordedRequest", "TestUser"]

# The person who signs in with the password grant unless a test adds others.
TEST_USERNAME = "jdoe"
TEST_PASSWORD = "correct horse battery staple"


class EmpowerIDTestServer:
    """In-process fake of EmpowerID's OAuth token endpoint and a bearer-protected API.

    It listens on an ephemeral port of 127.0.0.1, serving from a background thread:

    * ``POST /oauth/v2/token``: the ``refresh_token`` grant, with ``client_secret_post`` or
      ``client_secret_basic`` client authentication, refresh token rotation and reuse
      detection, answering in EmpowerID's JSON shape.
    * ``/api/...`` (any method): requires ``Authorization: Bearer <access token>`` and echoes
      the request as JSON. ``/api/forbidden`` answers 403, ``/api/redirect?to=/api/x`` 302
      (``to`` may also be an ``http://127.0.0.1:<port>/...`` URL of another loopback server).
    * ``GET /oauth/.well-known/openid-configuration``: a discovery document.
    * ``GET /oauth/v2/ui/authorize``: the authorization code grant's sign-in, done without
      a person (`sign_in`), then a 302 back to a loopback redirect URI; PKCE S256.
    * ``POST /oauth/v2/device/authorize``: device authorization; a test completes the
      sign-in with `approve_device` or `deny_device`.
    * ``GET /oauth/.well-known/jwks``: the public keys that sign ID tokens (RS256, each
      with a ``kid``); `rotate_signing_key` changes them.

    Args:
        client_id: The client's id.
        client_secret: The client's secret; ``None`` registers the client as a public one
            (a native or browser application without a secret). The token endpoint then
            takes its ``client_id`` alone for the authorization code grant (its codes
            asked for with PKCE), the device code grant and the refresh grant, and
            answers ``unauthorized_client`` to every other grant, the password grant
            included (RFC 9700 says not to use it; EmpowerID documents it only with a
            secret); a client secret sent anyway, and tokeninfo and tokenrevoke (which
            need the client's credentials in HTTP Basic), get ``invalid_client``.
        access_token_lifetime: ``expires_in`` of issued access tokens, in seconds; ``None``
            omits ``expires_in`` from answers and the tokens never expire.
        api_key: When set, every token and API request must carry it in the
            ``X-EmpowerID-API-Key`` header, else 401.
        rotate_refresh_tokens: Each refresh returns a new refresh token and retires the used
            one (has no effect when `return_refresh_token` is False).
        reuse_detection: Presenting a retired refresh token revokes the whole grant.
        return_refresh_token: When False, refresh answers omit ``refresh_token`` and the
            client must keep using the one it has.
        include_empty_error_fields: Success answers also carry ``"error": ""`` and
            ``"error_description": "null"``, as EmpowerID's do.
        id_token_issuer: The ``iss`` of the ID tokens issued: EmpowerID's default, the
            string ``"EmpowerID"``, while the discovery document's ``issuer`` is the
            server's URL, as on an EmpowerID server left at its default. ``None`` makes
            ``iss`` the discovery document's ``issuer``.

    Attributes:
        reject_all_access_tokens: Set to True to make the API answer 401 for every access
            token, even freshly issued ones (e.g. to check a client doesn't loop on 401s).
        on_api_request: A callable run (with no arguments, in the server's thread, before
            the token is checked) whenever a request reaches ``/api/...``; lets a test act
            while a request is in flight. Its exceptions become 500 answers and are listed
            in `handler_errors`.
        set_cookie_on_401: A ``name=value`` cookie the API sets on its 401 answers (as a
            load balancer's affinity cookie would), to check that re-sends carry it.
        client_credentials_enabled: EmpowerID's "Enable Client Credential Flow" switch of
            the application; set to False and the client credentials grant answers
            ``unauthorized_client``.
        publish_discovery: Set to False to answer 404 for the discovery document, as older
            EmpowerID servers do.
        discovery_overrides: Keys to set in the discovery document (``None`` removes the
            key), e.g. ``{"tokeninfo_endpoint": None}`` for a document that omits it.
        test_user: The person who signs in with the password grant unless a test adds
            others (`add_user`): username ``"jdoe"``, password
            ``"correct horse battery staple"``.
        sign_in: How the authorization endpoint's automatic sign-in ends: ``"approve"``
            (as `sign_in_username`, by default `test_user`) or ``"deny"``
            (``error=access_denied`` on the redirect).
        sign_in_username: Who approves the browser sign-in; None for `test_user`.
        redirect_uris: The client's registered redirect URIs; a loopback one matches any
            port (RFC 8252). None (the default) accepts any ``http`` loopback URI.
        require_pkce: The authorization endpoint refuses a request without a
            ``code_challenge`` (S256 is the only method accepted either way).
        authorization_code_lifetime: Seconds an authorization code stays valid.
        device_interval: The polling interval the device authorization endpoint states
            (seconds; a float is allowed, so tests stay fast).
        device_interval_name: Its key: ``"interval"`` or ``"polling_interval"``, EmpowerID's
            two spellings.
        device_code_lifetime: The device code's ``expires_in``, in seconds.
        device_grant_types: The polling ``grant_type`` spellings the token endpoint knows
            (the URN and ``"device_code"``); others get ``unsupported_grant_type``.
        on_device_authorization: A callable run with the user code each time a device code
            is issued (``server.approve_device`` approves every device sign-in at once).

    Example:
        >>> with EmpowerIDTestServer() as server:  # doctest: +SKIP
        ...     tokens = server.issue_grant()
        ...     r = requests.post(server.token_endpoint, data={
        ...         "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        ...         "client_id": "test-client", "client_secret": "test-client-secret"})
        ...     requests.get(server.api_url("/api/whoami"),
        ...                  headers={"Authorization": "Bearer " + r.json()["access_token"]})

        A public client, signing a person in at a device and refreshing without a secret:

        >>> with EmpowerIDTestServer(  # doctest: +SKIP
        ...     client_id="my-native-app", client_secret=None
        ... ) as server:
        ...     eid = EmpowerIDClient(server=server.url, client_id="my-native-app")
        ...     token = eid.login_with_device(
        ...         prompt=lambda device: server.approve_device(device.user_code)
        ...     )
        ...     token = eid.refresh(token.refresh_token)
    """

    def __init__(
        self,
        client_id: str = "test-client",
        client_secret: str | None = "test-client-secret",
        *,
        access_token_lifetime: int | None = 3600,
        api_key: str | None = None,
        rotate_refresh_tokens: bool = True,
        reuse_detection: bool = True,
        return_refresh_token: bool = True,
        include_empty_error_fields: bool = True,
        id_token_issuer: str | None = "EmpowerID",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token_lifetime = access_token_lifetime
        self.api_key = api_key
        # Without a refresh token in the answer the client can't learn a new one: no rotation.
        self.rotate_refresh_tokens = rotate_refresh_tokens and return_refresh_token
        self.reuse_detection = reuse_detection
        self.return_refresh_token = return_refresh_token
        self.include_empty_error_fields = include_empty_error_fields
        self.id_token_issuer = id_token_issuer
        # Plain attributes: single reads/writes of them are atomic, so no lock is needed.
        self.reject_all_access_tokens = False
        self.on_api_request: Callable[[], object] | None = None
        self.set_cookie_on_401: str | None = None
        self.client_credentials_enabled = True
        self.publish_discovery = True
        self.discovery_overrides: dict[str, Any] = {}
        self.sign_in = "approve"
        self.sign_in_username: str | None = None
        self.redirect_uris: list[str] | None = None
        self.require_pkce = True
        self.authorization_code_lifetime = 60.0
        self.device_interval = 5.0
        self.device_interval_name = "interval"
        self.device_code_lifetime = 600.0
        self.device_grant_types: tuple[str, ...] = device_code.GRANT_TYPES
        self.on_device_authorization: Callable[[str], object] | None = None

        self._state = ServerState()
        self._lifecycle_lock = threading.Lock()
        self._httpd: LoopbackHTTPServer | None = None
        self.test_user = self.add_user(
            TEST_USERNAME, TEST_PASSWORD, first_name="Jane", last_name="Doe"
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Bind an ephemeral port on 127.0.0.1 and start serving in a background thread.

        A server can be started once; `stop` it when done (or use ``with``).

        Example:
            >>> server = EmpowerIDTestServer()
            >>> server.start()
            >>> server.url.startswith("http://127.0.0.1:")
            True
            >>> server.stop()
        """
        with self._lifecycle_lock:
            if self._httpd is not None or self._state.stopping.is_set():
                raise RuntimeError("EmpowerIDTestServer can only be started once")
            httpd = LoopbackHTTPServer(self._respond, self._state.record_error)
            self._httpd = httpd
            self._state.url = f"http://127.0.0.1:{httpd.server_port}"
            httpd.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close open connections and join the threads. Idempotent.

        Requests sleeping in a `FaultSpec.delay` are woken and closed without an answer.

        Example:
            >>> server = EmpowerIDTestServer()
            >>> server.start()
            >>> server.stop()
            >>> server.stop()  # no-op
        """
        with self._lifecycle_lock:
            already = self._state.stopping.is_set()
            self._state.stopping.set()
            httpd = self._httpd
        if already or httpd is None:
            return
        httpd.stop(timeout)

    def __enter__(self) -> EmpowerIDTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmpowerIDTestServer(url={self._state.url!r}, client_id={self.client_id!r})"

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, ``"http://127.0.0.1:<port>"``; available once started."""
        url = self._state.url
        if url is None:
            raise RuntimeError("EmpowerIDTestServer has no URL until start() is called")
        return url

    @property
    def token_endpoint(self) -> str:
        """URL of the token endpoint, ``url + "/oauth/v2/token"``."""
        return self.url + token.PATH

    def api_url(self, path: str) -> str:
        """Return the absolute URL of `path` on this server.

        Example:
            >>> server.api_url("/api/whoami")  # doctest: +SKIP
            'http://127.0.0.1:54321/api/whoami'
        """
        if not path.startswith("/"):
            path = "/" + path
        return self.url + path

    # -- grants and tokens ---------------------------------------------------------------

    def issue_grant(
        self,
        scope: str = "openid profile",
        expires_in: int | None = None,
        *,
        person_id: str | None = None,
        refresh_token: str | None = None,
    ) -> dict[str, Any]:
        """Start a new grant, as if a user had just signed in, and return its tokens.

        Args:
            scope: Space-separated scopes; ``openid`` among them yields an ``id_token``.
            expires_in: Lifetime of this first access token in seconds (e.g. 0 for one that is
                already expired); ``None`` uses `access_token_lifetime`. Later refreshes always
                use `access_token_lifetime`.
            person_id: The person's GUID reported as ``id``; random when omitted.
            refresh_token: The grant's first refresh token; random when omitted. A
                fixed one lets code written with a placeholder (``refresh_token="..."``)
                run as written against this server.

        Returns:
            A token response: ``access_token``, ``token_type`` ("Bearer"), ``expires_in``
            (left out when no lifetime applies), ``refresh_token``, ``id_token`` (a string or
            None), ``id`` (person GUID) and ``scope``.

        Example:
            >>> tokens = server.issue_grant(scope="openid profile")  # doctest: +SKIP
            >>> tokens["token_type"], tokens["id_token"] is not None  # doctest: +SKIP
            ('Bearer', True)
        """
        lifetime = self.access_token_lifetime if expires_in is None else expires_in
        grant, access_token = self._state.new_grant(
            person_id=person_id or str(uuid.uuid4()),
            scope=scope,
            refresh_token=refresh_token or new_refresh_token(),
            lifetime=lifetime,
        )
        answer: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
        if lifetime is not None:
            answer["expires_in"] = lifetime
        answer["refresh_token"] = grant.refresh_token
        answer["id_token"] = issue_id_token(self, self._state, grant, scope)
        answer["id"] = grant.person_id
        answer["scope"] = scope
        return answer

    def revoke_grant(self, token: str) -> None:
        """Revoke the grant that `token` (a refresh or access token) belongs to.

        All of the grant's access tokens then get 401 at the API and its refresh tokens
        ``invalid_grant``.

        Raises:
            KeyError: `token` was never issued by this server.

        Example:
            >>> server.revoke_grant(tokens["refresh_token"])  # doctest: +SKIP
        """
        self._state.revoke_grant(token)

    def revoke_access_token(self, access_token: str) -> None:
        """Revoke one access token; the grant and its refresh token stay valid.

        Raises:
            KeyError: `access_token` was never issued by this server.

        Example:
            >>> server.revoke_access_token(tokens["access_token"])  # doctest: +SKIP
        """
        self._state.revoke_access_token(access_token)

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far count as expired (the API answers 401).

        Tokens issued afterwards, e.g. by a refresh, are valid as usual.

        Example:
            >>> server.expire_access_tokens()  # doctest: +SKIP
        """
        self._state.expire_access_tokens()

    def add_user(
        self,
        username: str,
        password: str,
        person_id: str | None = None,
        *,
        first_name: str | None = None,
        last_name: str = "",
        email: str | None = None,
    ) -> TestUser:
        """Add a person who can sign in with the password grant, and whom client
        credentials' ``username`` and a JWT bearer assertion's ``sub`` may name.

        Args:
            username, password: the person's credentials.
            person_id: the person's GUID, reported as ``id``; random when omitted.
            first_name, last_name, email: what userinfo reports (``first_name``
                defaults to the username, ``email`` to ``<username>@example.com``).

        Returns:
            The user, with its ``person_id``.

        Example:
            >>> user = server.add_user("asmith", "s3cret-Passw0rd")  # doctest: +SKIP
            >>> token = eid.password("asmith", "s3cret-Passw0rd")  # doctest: +SKIP
            >>> token.raw["id"] == user.person_id  # doctest: +SKIP
            True
        """
        user = TestUser(
            username=username,
            password=password,
            person_id=person_id or str(uuid.uuid4()),
            first_name=username if first_name is None else first_name,
            last_name=last_name,
            email=f"{username}@example.com" if email is None else email,
        )
        with self._state.lock:
            self._state.users[username] = user
        return user

    def trust_assertion_issuer(self, issuer: str, key: str | dict[str, str]) -> None:
        """Accept JWT bearer assertions (RFC 7523) and token exchange subject tokens
        (RFC 8693) that `issuer` signs with `key`.

        Args:
            issuer: the assertion's ``iss``.
            key: an HS256 shared secret, or an RSA public key as a JWK
                (``{"kty": "RSA", "n": ..., "e": ...}``) for RS256.

        Example:
            >>> server.trust_assertion_issuer("my-service", "shared-secret")  # doctest: +SKIP
        """
        if isinstance(key, dict) and not (key.get("kty") == "RSA" and "n" in key and "e" in key):
            raise ValueError("key must be an HS256 secret or an RSA public JWK (kty, n, e)")
        with self._state.lock:
            self._state.assertion_keys[issuer] = key

    def approve_device(self, user_code: str, username: str | None = None) -> None:
        """Complete a device sign-in as the person would on the verification page: the
        device's next poll gets tokens for `username` (`test_user` when None).

        Raises:
            KeyError: no pending device authorization has this user code, or no user this
                username.

        Example:
            >>> token = eid.login_with_device(  # doctest: +SKIP
            ...     scope="openid", prompt=lambda device: server.approve_device(device.user_code)
            ... )
        """
        name = self.test_user.username if username is None else username
        with self._state.lock:
            user = self._state.users.get(name)
            if user is None:
                raise KeyError(f"no user {name!r}: add_user() first")
            record = self._pending_device(user_code)
            record.status, record.username, record.person_id = "approved", name, user.person_id

    def deny_device(self, user_code: str) -> None:
        """Refuse a device sign-in: the device's next poll gets ``access_denied``.

        Raises:
            KeyError: no pending device authorization has this user code.

        Example:
            >>> server.deny_device(device.user_code)  # doctest: +SKIP
        """
        with self._state.lock:
            self._pending_device(user_code).status = "denied"

    def fail_next(self, fault: FaultSpec, count: int = 1) -> None:
        """Queue `fault` for each of the next `count` token endpoint requests.

        Faults queue up in order after any already pending.

        Example:
            >>> server.fail_next(FaultSpec(status=503, retry_after=1), count=2)  # doctest: +SKIP
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        self._state.queue_faults(fault, count)

    def rotate_signing_key(self, *, keep_previous: bool = True) -> str:
        """Sign ID tokens with a newly generated RSA key from now on, under a new ``kid``.

        The JWKS lists the new key and, with `keep_previous`, the one it replaces (ID
        tokens signed before still verify), as a server does while it rolls keys over.

        Returns:
            The new key's ``kid``.

        Example:
            >>> kid = server.rotate_signing_key()  # doctest: +SKIP
            >>> token = eid.refresh(refresh_token)  # doctest: +SKIP
            >>> server.jwks_requests  # the client read the keys again for the new kid
            2
        """
        return self._state.signing_keys.rotate(keep_previous=keep_previous)

    def sign_id_token(self, claims: Mapping[str, Any]) -> str:
        """Sign `claims`, exactly as given, with the key that signs this server's ID tokens.

        For testing how a client treats an ID token that is authentic but wrong:
        expired, for another audience, from another issuer, without a nonce.

        Example:
            >>> now = int(time.time())  # doctest: +SKIP
            >>> id_token = server.sign_id_token({"iss": "EmpowerID", "sub": "p-1",
            ...     "aud": "another-app", "iat": now, "exp": now + 60})  # doctest: +SKIP
        """
        return sign(self._state, claims)

    # -- observation ---------------------------------------------------------------------

    @property
    def jwks_requests(self) -> int:
        """Number of requests for the JWKS (the ID tokens' signing keys).

        Example:
            >>> server.jwks_requests  # doctest: +SKIP
            1
        """
        return self._state.signing_keys.jwks_requests

    @property
    def refresh_grants(self) -> int:
        """Number of successful ``refresh_token`` grants served."""
        with self._state.lock:
            return self._state.refresh_grants

    @property
    def grants_served(self) -> dict[str, int]:
        """Successful token requests so far, by ``grant_type``.

        Example:
            >>> server.grants_served  # doctest: +SKIP
            {'client_credentials': 1, 'password': 2}
        """
        with self._state.lock:
            return dict(self._state.grants_served)

    @property
    def token_requests(self) -> int:
        """Number of POSTs to the token endpoint, failed and faulted ones included."""
        with self._state.lock:
            return self._state.token_requests

    @property
    def reuse_detected(self) -> int:
        """Number of times a retired (rotated-away) refresh token was presented."""
        with self._state.lock:
            return self._state.reuse_detected

    @property
    def api_requests(self) -> list[RecordedRequest]:
        """Copy of the requests to ``/api/...``, in arrival order (401s included)."""
        with self._state.lock:
            return list(self._state.api_requests)

    @property
    def token_request_log(self) -> list[RecordedRequest]:
        """Copy of the POSTs to the token endpoint, in arrival order."""
        with self._state.lock:
            return list(self._state.token_request_log)

    @property
    def handler_errors(self) -> list[BaseException]:
        """Unexpected exceptions raised while handling requests (answered with 500)."""
        with self._state.lock:
            return list(self._state.handler_errors)

    @property
    def issued_secrets(self) -> frozenset[str]:
        """Every access, refresh and ID token this server issued, its client secret and
        its API key: what must never appear in a log, an error or a ``repr``.

        Example:
            >>> assert not any(s in caplog.text for s in server.issued_secrets)  # doctest: +SKIP
        """
        found = self._state.issued_tokens()
        if self.client_secret is not None:  # None: a public client
            found.add(self.client_secret)
        with self._state.lock:
            found.update(user.password for user in self._state.users.values())
            found.update(k for k in self._state.assertion_keys.values() if isinstance(k, str))
        if self.api_key:
            found.add(self.api_key)
        return frozenset(found)

    def clear_faults(self) -> None:
        """Drop the faults still queued by `fail_next` (the end of an outage, say)."""
        self._state.clear_faults()

    def reset_counters(self) -> None:
        """Zero the counters and clear the request logs; tokens and queued faults remain.

        Example:
            >>> server.reset_counters()  # doctest: +SKIP
            >>> server.token_requests  # doctest: +SKIP
            0
        """
        self._state.reset_counters()

    # -- internals ---------------------------------------------------------------------

    def _pending_device(self, user_code: str) -> DeviceAuthorization:
        # The lock is held by the caller.
        wanted = user_code.upper().replace(" ", "")
        for record in self._state.device_authorizations.values():
            if record.user_code == wanted and record.status == "pending":
                return record
        raise KeyError("no pending device authorization has this user code")

    def _respond(self, request: RecordedRequest) -> Answer | None:
        return endpoints.respond(self, self._state, request)
