"""A loopback HTTP server that imitates EmpowerID's OAuth token endpoint and a protected API.

Everything here is standard library only, so users can run it in their own tests without
extra dependencies. The server runs in a background thread of the test process; all of its
state sits behind one lock, so tests may inspect and change it while requests are in flight.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

from eid_auth.testing._faults import FaultSpec, fault_answer, wait_out
from eid_auth.testing._http import LoopbackHTTPServer
from eid_auth.testing._messages import (
    API_KEY_HEADER,
    Answer,
    RecordedRequest,
    json_bytes,
    oauth_error,
    oauth_form,
)

__all__ = ["EmpowerIDTestServer", "FaultSpec", "RecordedRequest"]

TOKEN_PATH = "/oauth/v2/token"
DISCOVERY_PATH = "/oauth/.well-known/openid-configuration"
API_PREFIX = "/api/"


def _is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


@dataclass
class _Grant:
    """One sign-in: a person, a scope, and the chain of refresh tokens it went through."""

    person_id: str
    scope: str
    refresh_token: str
    used_refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)
    revoked: bool = False


@dataclass
class _AccessToken:
    grant: _Grant
    expires_at: float | None  # time.monotonic() deadline; None = never expires
    revoked: bool = False
    expired: bool = False  # set by expire_access_tokens()


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

    Args:
        client_id: The client's id.
        client_secret: The client's secret.
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

    Attributes:
        reject_all_access_tokens: Set to True to make the API answer 401 for every access
            token, even freshly issued ones (e.g. to check a client doesn't loop on 401s).
        on_api_request: A callable run (with no arguments, in the server's thread, before
            the token is checked) whenever a request reaches ``/api/...``; lets a test act
            while a request is in flight. Its exceptions become 500 answers and are listed
            in `handler_errors`.
        set_cookie_on_401: A ``name=value`` cookie the API sets on its 401 answers (as a
            load balancer's affinity cookie would), to check that re-sends carry it.

    Example:
        >>> with EmpowerIDTestServer() as server:  # doctest: +SKIP
        ...     tokens = server.issue_grant()
        ...     r = requests.post(server.token_endpoint, data={
        ...         "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        ...         "client_id": "test-client", "client_secret": "test-client-secret"})
        ...     requests.get(server.api_url("/api/whoami"),
        ...                  headers={"Authorization": "Bearer " + r.json()["access_token"]})
    """

    def __init__(
        self,
        client_id: str = "test-client",
        client_secret: str = "test-client-secret",
        *,
        access_token_lifetime: int | None = 3600,
        api_key: str | None = None,
        rotate_refresh_tokens: bool = True,
        reuse_detection: bool = True,
        return_refresh_token: bool = True,
        include_empty_error_fields: bool = True,
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
        # Plain attributes: single reads/writes of them are atomic, so no lock is needed.
        self.reject_all_access_tokens = False
        self.on_api_request: Callable[[], object] | None = None
        self.set_cookie_on_401: str | None = None

        self._lock = threading.Lock()
        self._refresh_index: dict[str, _Grant] = {}  # every refresh token ever issued
        self._access_index: dict[str, _AccessToken] = {}
        self._faults: deque[FaultSpec] = deque()
        self._refresh_grants = 0
        self._token_requests = 0
        self._reuse_detected = 0
        self._api_requests: list[RecordedRequest] = []
        self._token_request_log: list[RecordedRequest] = []
        self._handler_errors: list[BaseException] = []
        self._id_tokens: list[str] = []

        self._lifecycle_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: LoopbackHTTPServer | None = None
        self._url: str | None = None

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
            if self._httpd is not None or self._stopping.is_set():
                raise RuntimeError("EmpowerIDTestServer can only be started once")
            httpd = LoopbackHTTPServer(self._handle, self._record_error)
            self._httpd = httpd
            self._url = f"http://127.0.0.1:{httpd.server_port}"
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
            already = self._stopping.is_set()
            self._stopping.set()
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
        return f"EmpowerIDTestServer(url={self._url!r}, client_id={self.client_id!r})"

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, ``"http://127.0.0.1:<port>"``; available once started."""
        if self._url is None:
            raise RuntimeError("EmpowerIDTestServer has no URL until start() is called")
        return self._url

    @property
    def token_endpoint(self) -> str:
        """URL of the token endpoint, ``url + "/oauth/v2/token"``."""
        return self.url + TOKEN_PATH

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
        with self._lock:
            grant = _Grant(
                person_id=person_id or str(uuid.uuid4()),
                scope=scope,
                refresh_token=refresh_token or self._new_refresh_token(),
            )
            self._refresh_index[grant.refresh_token] = grant
            access_token = self._new_access_token(grant, lifetime)
        answer: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
        if lifetime is not None:
            answer["expires_in"] = lifetime
        answer["refresh_token"] = grant.refresh_token
        answer["id_token"] = self._id_token(grant, scope)
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
        with self._lock:
            grant = self._refresh_index.get(token)
            if grant is None and token in self._access_index:
                grant = self._access_index[token].grant
            if grant is None:
                raise KeyError("unknown token: not issued by this server")
            grant.revoked = True

    def revoke_access_token(self, access_token: str) -> None:
        """Revoke one access token; the grant and its refresh token stay valid.

        Raises:
            KeyError: `access_token` was never issued by this server.

        Example:
            >>> server.revoke_access_token(tokens["access_token"])  # doctest: +SKIP
        """
        with self._lock:
            record = self._access_index.get(access_token)
            if record is None:
                raise KeyError("unknown access token: not issued by this server")
            record.revoked = True

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far count as expired (the API answers 401).

        Tokens issued afterwards, e.g. by a refresh, are valid as usual.

        Example:
            >>> server.expire_access_tokens()  # doctest: +SKIP
        """
        with self._lock:
            for record in self._access_index.values():
                record.expired = True

    def fail_next(self, fault: FaultSpec, count: int = 1) -> None:
        """Queue `fault` for each of the next `count` token endpoint requests.

        Faults queue up in order after any already pending.

        Example:
            >>> server.fail_next(FaultSpec(status=503, retry_after=1), count=2)  # doctest: +SKIP
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        with self._lock:
            self._faults.extend([fault] * count)

    # -- observation ---------------------------------------------------------------------

    @property
    def refresh_grants(self) -> int:
        """Number of successful ``refresh_token`` grants served."""
        with self._lock:
            return self._refresh_grants

    @property
    def token_requests(self) -> int:
        """Number of POSTs to the token endpoint, failed and faulted ones included."""
        with self._lock:
            return self._token_requests

    @property
    def reuse_detected(self) -> int:
        """Number of times a retired (rotated-away) refresh token was presented."""
        with self._lock:
            return self._reuse_detected

    @property
    def api_requests(self) -> list[RecordedRequest]:
        """Copy of the requests to ``/api/...``, in arrival order (401s included)."""
        with self._lock:
            return list(self._api_requests)

    @property
    def token_request_log(self) -> list[RecordedRequest]:
        """Copy of the POSTs to the token endpoint, in arrival order."""
        with self._lock:
            return list(self._token_request_log)

    @property
    def handler_errors(self) -> list[BaseException]:
        """Unexpected exceptions raised while handling requests (answered with 500)."""
        with self._lock:
            return list(self._handler_errors)

    @property
    def issued_secrets(self) -> frozenset[str]:
        """Every access, refresh and ID token this server issued, its client secret and
        its API key: what must never appear in a log, an error or a ``repr``.

        Example:
            >>> assert not any(s in caplog.text for s in server.issued_secrets)  # doctest: +SKIP
        """
        with self._lock:
            found = {*self._refresh_index, *self._access_index, *self._id_tokens}
        found.add(self.client_secret)
        if self.api_key:
            found.add(self.api_key)
        return frozenset(found)

    def clear_faults(self) -> None:
        """Drop the faults still queued by `fail_next` (the end of an outage, say)."""
        with self._lock:
            self._faults.clear()

    def reset_counters(self) -> None:
        """Zero the counters and clear the request logs; tokens and queued faults remain.

        Example:
            >>> server.reset_counters()  # doctest: +SKIP
            >>> server.token_requests  # doctest: +SKIP
            0
        """
        with self._lock:
            self._refresh_grants = 0
            self._token_requests = 0
            self._reuse_detected = 0
            self._api_requests.clear()
            self._token_request_log.clear()

    # -- internals (the lock must be held where noted) -----------------------------------

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self._handler_errors.append(exc)

    def _new_refresh_token(self) -> str:
        return "rt_" + secrets.token_urlsafe(32)

    def _new_access_token(self, grant: _Grant, lifetime: int | None) -> str:
        # Lock held.
        token = "at_" + secrets.token_urlsafe(32)
        expires_at = None if lifetime is None else time.monotonic() + lifetime
        self._access_index[token] = _AccessToken(grant=grant, expires_at=expires_at)
        grant.access_tokens.add(token)
        return token

    def _id_token(self, grant: _Grant, scope: str) -> str | None:
        """An HS256 JWT signed with the client secret, as OIDC allows for confidential clients."""
        if "openid" not in scope.split():
            return None
        now = int(time.time())
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "iss": self._url_or_blank() + "/oauth",
            "sub": grant.person_id,
            "aud": self.client_id,
            "iat": now,
            "exp": now + (self.access_token_lifetime or 3600),
        }
        signing_input = f"{_b64url(json_bytes(header))}.{_b64url(json_bytes(claims))}"
        signature = hmac.new(
            self.client_secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256
        ).digest()
        id_token = f"{signing_input}.{_b64url(signature)}"
        self._id_tokens.append(id_token)
        return id_token

    def _url_or_blank(self) -> str:
        return self._url or ""

    def _api_key_ok(self, record: RecordedRequest) -> bool:
        if self.api_key is None:
            return True
        presented = record.header(API_KEY_HEADER)
        return presented is not None and _same(presented, self.api_key)

    def _handle(self, record: RecordedRequest) -> Answer | None:
        path = urlsplit(record.path).path
        if path == TOKEN_PATH:
            return self._handle_token(record)
        if path.startswith(API_PREFIX):
            return self._handle_api(record, path)
        if path == DISCOVERY_PATH and record.method in ("GET", "HEAD"):
            return Answer.json(200, self._discovery_document())
        return Answer.json(404, {"error": "not_found"})

    def _discovery_document(self) -> dict[str, Any]:
        base = self.url
        return {
            "issuer": base + "/oauth",
            "authorization_endpoint": base + "/oauth/v2/ui/authorize",
            "token_endpoint": base + TOKEN_PATH,
            "tokeninfo_endpoint": base + "/oauth/v2/tokeninfo",
            "tokenrevoke_endpoint": base + "/oauth/v2/token/revoke",
            "userinfo_endpoint": base + "/oauth/v2/userinfo",
            "grant_types_supported": ["refresh_token"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }

    # -- token endpoint ------------------------------------------------------------------

    def _handle_token(self, record: RecordedRequest) -> Answer | None:
        if record.method != "POST":
            return Answer.json(
                405,
                {"error": "invalid_request", "error_description": "use POST"},
                ("Allow", "POST"),
            )
        with self._lock:
            self._token_requests += 1
            self._token_request_log.append(record)
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            if wait_out(fault, self._stopping):  # outside the lock
                return None
            if not fault.serves_normally:
                return fault_answer(fault)
        answer = self._token_answer(record)
        answer.headers += [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
        return answer

    def _token_answer(self, record: RecordedRequest) -> Answer:
        if not self._api_key_ok(record):
            return Answer.json(
                401,
                {
                    "error": "invalid_request",
                    "error_description": f"missing or wrong {API_KEY_HEADER}",
                },
            )
        form = oauth_form(record)
        if isinstance(form, Answer):
            return form

        client_error = self._authenticate_client(record, form)
        if client_error is not None:
            return client_error

        grant_type = form.get("grant_type")
        if not grant_type:
            return oauth_error(400, "invalid_request", "missing grant_type")
        if grant_type != "refresh_token":
            return oauth_error(
                400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
            )
        presented = form.get("refresh_token")
        if not presented:
            return oauth_error(400, "invalid_request", "missing refresh_token")
        return self._refresh(presented, form.get("scope"))

    def _authenticate_client(
        self, record: RecordedRequest, form: Mapping[str, str]
    ) -> Answer | None:
        authorization = record.header("Authorization")
        if authorization is not None and authorization[:6].lower() == "basic ":
            if "client_secret" in form:
                # RFC 6749, section 2.3: a client must not use more than one method.
                return oauth_error(
                    400, "invalid_request", "use either client_secret_basic or client_secret_post"
                )
            challenge = ("WWW-Authenticate", 'Basic realm="EmpowerID"')
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode(
                    "utf-8"
                )
            except (binascii.Error, UnicodeDecodeError):
                return oauth_error(401, "invalid_client", "malformed Basic credentials", challenge)
            raw_id, sep, raw_secret = decoded.partition(":")
            if not sep:
                return oauth_error(401, "invalid_client", "malformed Basic credentials", challenge)
            # RFC 6749 says id and secret are form-urlencoded inside Basic; many clients
            # send them raw. Accept either.
            candidates = {(raw_id, raw_secret), (unquote_plus(raw_id), unquote_plus(raw_secret))}
            if not any(self._client_ok(cid, sec) for cid, sec in candidates):
                return oauth_error(
                    401, "invalid_client", "client authentication failed", challenge
                )
            body_id = form.get("client_id")
            if body_id is not None and body_id not in {cid for cid, _ in candidates}:
                return oauth_error(
                    401, "invalid_client", "client_id differs from Basic credentials", challenge
                )
            return None
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if client_id is None or client_secret is None:
            return oauth_error(401, "invalid_client", "missing client credentials")
        if not self._client_ok(client_id, client_secret):
            return oauth_error(401, "invalid_client", "client authentication failed")
        return None

    def _client_ok(self, client_id: str, client_secret: str) -> bool:
        return _same(client_id, self.client_id) and _same(client_secret, self.client_secret)

    def _refresh(self, presented: str, requested_scope: str | None) -> Answer:
        with self._lock:
            grant = self._refresh_index.get(presented)
            if grant is None:
                return oauth_error(400, "invalid_grant", "unknown refresh token")
            if presented != grant.refresh_token:
                self._reuse_detected += 1
                if self.reuse_detection:
                    # Someone replayed a retired token: assume theft, kill the whole grant.
                    grant.revoked = True
                return oauth_error(400, "invalid_grant", "refresh token has already been used")
            if grant.revoked:
                return oauth_error(400, "invalid_grant", "refresh token has been revoked")
            scope = grant.scope
            if requested_scope:
                if not set(requested_scope.split()) <= set(grant.scope.split()):
                    return oauth_error(400, "invalid_scope", "scope exceeds the granted scope")
                scope = requested_scope
            access_token = self._new_access_token(grant, self.access_token_lifetime)
            if self.rotate_refresh_tokens:
                grant.used_refresh_tokens.add(grant.refresh_token)
                grant.refresh_token = self._new_refresh_token()
                self._refresh_index[grant.refresh_token] = grant
            self._refresh_grants += 1
            refresh_token = grant.refresh_token
            person_id = grant.person_id
        # Field order as in EmpowerID's documented answer.
        answer: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer"}
        if self.access_token_lifetime is not None:
            answer["expires_in"] = self.access_token_lifetime
        if self.return_refresh_token:
            answer["refresh_token"] = refresh_token
        answer["id_token"] = self._id_token(grant, scope)
        answer["id"] = person_id
        if self.include_empty_error_fields:
            answer["error"] = ""
            answer["error_description"] = "null"
        return Answer.json(200, answer)

    # -- protected API -------------------------------------------------------------------

    def _handle_api(self, record: RecordedRequest, path: str) -> Answer:
        with self._lock:
            self._api_requests.append(record)
        hook = self.on_api_request
        if hook is not None:
            hook()  # outside the lock: the hook may well call back into this server
        if not self._api_key_ok(record):
            return Answer.json(
                401,
                {
                    "error": "invalid_request",
                    "error_description": f"missing or wrong {API_KEY_HEADER}: API key required",
                },
            )
        person_id, problem = self._check_bearer(record.header("Authorization"))
        if person_id is None:
            cookie = self.set_cookie_on_401
            return Answer.json(
                401,
                {"error": "invalid_token", "error_description": problem},
                ("WWW-Authenticate", 'Bearer error="invalid_token"'),
                *((("Set-Cookie", f"{cookie}; Path=/"),) if cookie else ()),
            )
        if path == "/api/forbidden":
            return Answer.json(
                403, {"error": "forbidden", "error_description": "not allowed for this person"}
            )
        if path == "/api/redirect":
            targets = parse_qs(urlsplit(record.path).query).get("to", [])
            target = targets[0] if targets else ""
            # A path on this server, or another loopback server (cross-origin
            # tests); a test server must not bounce clients anywhere else.
            if _is_loopback_url(target):
                location = target
            elif not target.startswith("/") or target.startswith("//") or "\\" in target:
                return Answer.json(
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": "to must be a path or a loopback URL",
                    },
                )
            else:
                location = self.url + target
            return Answer.json(302, {"location": location}, ("Location", location))
        return Answer.json(
            200,
            {
                "ok": True,
                "method": record.method,
                "path": record.path,
                "body": record.body.decode("latin-1"),
                "id": person_id,
                "content_type": record.header("Content-Type"),
            },
        )

    def _check_bearer(self, authorization: str | None) -> tuple[str | None, str]:
        """Return (person GUID, "") for a usable access token, else (None, reason)."""
        if authorization is None:
            return None, "missing access token"
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None, "missing access token"
        if self.reject_all_access_tokens:
            return None, "access token rejected"
        with self._lock:
            record = self._access_index.get(token)
            if record is None:
                return None, "unknown access token"
            if record.revoked or record.grant.revoked:
                return None, "access token has been revoked"
            if record.expired or (
                record.expires_at is not None and time.monotonic() >= record.expires_at
            ):
                return None, "access token has expired"
            return record.grant.person_id, ""
