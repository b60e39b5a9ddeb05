"""``EmpowerIDClient``: one object for an EmpowerID server's OAuth endpoints.

It holds the client's settings (the same keywords as ``EmpowerIDAuth``), reads
the server's discovery document once, and runs each grant EmpowerID offers,
returning a ``Token``. Sign-in flows that need a person (browser, device) and
the endpoints around a token's life build on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from ._config import TOKEN_PATH, endpoint_url, server_base_url
from ._config import token_endpoint as token_endpoint_config
from ._discovery import ServerMetadata, discover
from ._exceptions import ConfigurationError
from ._id_token import IDTokenValidator
from ._libraries import default_library
from ._renewal import password_grant
from ._token import Token
from ._token_endpoint import API_KEY_HEADER, ClientAuthMethod, HTTPClient
from ._transport import Answer, Failure, send_token_request

if TYPE_CHECKING:
    from ._authorization_code import AuthorizationRequest
    from ._device_code import DeviceAuthorization

__all__ = ["EmpowerIDClient"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


class EmpowerIDClient:
    """An EmpowerID server's OAuth endpoints, for one OAuth application (client).

    Args:
        server: the server's base URL, ``"https://eid.example.com"``: its
            discovery document (``/oauth/.well-known/openid-configuration``) is
            read the first time an endpoint other than the token endpoint is
            needed, and EmpowerID's default paths fill what it does not list.
        token_endpoint: instead of ``server``: the token endpoint's URL. The
            other endpoints are then found under the same base when the URL ends
            in ``/oauth/v2/token``, and must be given otherwise.
        client_id: the OAuth application's client ID.
        client_secret: its secret; ``None`` for a public client (a native or
            browser application), which sends only its client ID.
        client_auth, api_key, timeout, max_retries, backoff_factor, token_client:
            as for ``EmpowerIDAuth``; they apply to every request this client
            makes. ``token_client`` also reads the discovery document.
        issuer: the ``iss`` expected in ID tokens. EmpowerID's default is the
            string ``"EmpowerID"`` while its discovery document may say
            ``"https://<server>"``; by default either is accepted.
        authorization_endpoint, device_authorization_endpoint,
        introspection_endpoint, revocation_endpoint, userinfo_endpoint,
        end_session_endpoint, jwks_uri: endpoints given explicitly; they win over
            the discovery document.

    Raises:
        ConfigurationError: when the arguments cannot work; the message says why.

    Example:
        >>> eid = EmpowerIDClient(
        ...     server="https://eid.example.com", client_id="my-app", client_secret="s3cret"
        ... )
        >>> eid.token_endpoint
        'https://eid.example.com/oauth/v2/token'
        >>> token = eid.client_credentials(scope="api")  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        server: str | None = None,
        token_endpoint: str | None = None,
        client_id: str,
        client_secret: str | None = None,
        client_auth: ClientAuthMethod = "client_secret_post",
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        backoff_factor: float = 0.5,
        token_client: HTTPClient | None = None,
        issuer: str | None = None,
        authorization_endpoint: str | None = None,
        device_authorization_endpoint: str | None = None,
        introspection_endpoint: str | None = None,
        revocation_endpoint: str | None = None,
        userinfo_endpoint: str | None = None,
        end_session_endpoint: str | None = None,
        jwks_uri: str | None = None,
    ) -> None:
        if (token_endpoint is None) == (server is None):
            raise ConfigurationError(
                "give exactly one of server='https://host' or "
                "token_endpoint='https://host/oauth/v2/token'"
            )
        if server is not None:
            base: str | None = server_base_url(server)
            url = f"{base}{TOKEN_PATH}"
        else:
            url = endpoint_url("token_endpoint", token_endpoint)
            base = url[: -len(TOKEN_PATH)] if url.endswith(TOKEN_PATH) else None
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ConfigurationError("issuer must be a non-empty string or None")
        self._endpoint = token_endpoint_config(
            url=url,
            client_id=client_id,
            client_secret=client_secret,
            client_auth=client_auth,
            scope=None,
            api_key=api_key,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            token_client=token_client,
            secret_required=False,
        )
        self._base_url = base
        self._api_key = api_key
        self.issuer = issuer
        self._explicit = {
            "authorization_endpoint": authorization_endpoint,
            "device_authorization_endpoint": device_authorization_endpoint,
            "introspection_endpoint": introspection_endpoint,
            "revocation_endpoint": revocation_endpoint,
            "userinfo_endpoint": userinfo_endpoint,
            "end_session_endpoint": end_session_endpoint,
            "jwks_uri": jwks_uri,
        }
        for name, value in self._explicit.items():
            if value is not None:
                endpoint_url(name, value)
        self._metadata: ServerMetadata | None = None
        self._metadata_lock = threading.Lock()
        self._id_tokens = IDTokenValidator(self.client_id, self._fetch)

    def __repr__(self) -> str:
        return (
            f"EmpowerIDClient(token_endpoint={self.token_endpoint!r}, "
            f"client_id={self.client_id!r}, client_auth={self._endpoint.client_auth!r})"
        )

    @property
    def client_id(self) -> str:
        """The OAuth application's client ID."""
        return self._endpoint.client_id

    @property
    def token_endpoint(self) -> str:
        """The token endpoint every grant is sent to."""
        return self._endpoint.url

    @property
    def metadata(self) -> ServerMetadata:
        """Where the server's endpoints are: its discovery document (read once, on
        first use, and cached), EmpowerID's default paths for what it does not
        list, and the endpoints given to this client, which win."""
        metadata = self._metadata
        if metadata is not None:
            return metadata
        with self._metadata_lock:
            if self._metadata is None:
                self._metadata = self._discover().with_endpoints(
                    token_endpoint=self.token_endpoint, **self._explicit
                )
            return self._metadata

    # -- a person's sign-in: at a browser, or on another device ---------------

    def authorization_url(
        self,
        redirect_uri: str,
        scope: str | None = None,
        *,
        state: str | None = None,
        nonce: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> AuthorizationRequest:
        """Start the authorization code grant with PKCE (S256): where to send the
        person's browser, and what the redirect back and ``exchange_code`` need.

        A fresh ``state``, ``nonce`` and code verifier are made unless given;
        ``params`` adds parameters such as ``prompt`` or ``login_hint``. For a
        script on the person's own machine, ``login_in_browser`` does it all.

        Example:
            >>> request = eid.authorization_url(  # doctest: +SKIP
            ...     "https://app.example.com/callback", scope="openid profile"
            ... )
            >>> # send the browser to request.url; keep request until it comes back, then:
            >>> code = request.code_from_redirect(callback_url)  # doctest: +SKIP
            >>> token = eid.exchange_code(  # doctest: +SKIP
            ...     code, redirect_uri=request.redirect_uri,
            ...     code_verifier=request.code_verifier, nonce=request.nonce,
            ... )
        """
        from ._authorization_code import authorization_request

        _check_text("redirect_uri", redirect_uri)
        return authorization_request(
            self.metadata.authorization_endpoint,
            self.client_id,
            redirect_uri,
            scope,
            state=state,
            nonce=nonce,
            params=params,
        )

    def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str, nonce: str | None = None
    ) -> Token:
        """Exchange an authorization code for a token (the code is good once).

        Args:
            code: from the redirect (``AuthorizationRequest.code_from_redirect``).
            redirect_uri, code_verifier: the authorization request's.
            nonce: the authorization request's; the ID token must carry it.

        Example:
            >>> token = eid.exchange_code(  # doctest: +SKIP
            ...     code, redirect_uri=request.redirect_uri,
            ...     code_verifier=request.code_verifier, nonce=request.nonce,
            ... )
        """
        _check_text("code", code)
        _check_text("redirect_uri", redirect_uri)
        _check_text("code_verifier", code_verifier)
        token = self._endpoint.request_token(
            "authorization_code",
            {"code": code, "redirect_uri": redirect_uri, "code_verifier": code_verifier},
            default_library(),
            secrets=(code, code_verifier),
        )
        return self._checked(token, nonce=nonce)

    def login_in_browser(
        self,
        scope: str | None = None,
        *,
        port: int = 0,
        redirect_path: str = "/callback",
        timeout: float = 300.0,
        open_browser: Callable[[str], object] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Token:
        """Sign a person in through their browser, on this machine (RFC 8252).

        Listens on ``http://127.0.0.1:<port><redirect_path>`` (the port chosen by
        the system unless given: register the redirect URI without a port),
        opens the system browser at the authorization endpoint (``webbrowser``,
        so the ``BROWSER`` environment variable is honoured), checks the ``state``
        of the redirect back, exchanges its code (PKCE S256) and returns the token.

        Args:
            scope: the scope to ask for (``"openid profile"``...).
            port, redirect_path: where to listen for the redirect.
            timeout: seconds to wait for the redirect.
            open_browser: called with the URL instead of ``webbrowser.open``; when
                it returns ``False`` the URL is printed to stderr.
            params: more authorization parameters (``prompt``, ``login_hint``...).

        Raises:
            AccessDeniedError: the person refused (``access_denied``).
            SignInTimeoutError: no redirect came within ``timeout``.
            SignInError: another error on the redirect, or a ``state`` mismatch.
            TokenEndpointError: the code exchange was refused.

        Example:
            >>> token = eid.login_in_browser(scope="openid profile")  # doctest: +SKIP
        """
        from ._authorization_code import sign_in_in_browser

        def exchange(code: str, request: AuthorizationRequest) -> Token:
            return self.exchange_code(
                code,
                redirect_uri=request.redirect_uri,
                code_verifier=request.code_verifier,
                nonce=request.nonce,
            )

        return sign_in_in_browser(
            authorization_endpoint=self.metadata.authorization_endpoint,
            client_id=self.client_id,
            scope=scope,
            exchange=exchange,
            port=port,
            redirect_path=redirect_path,
            timeout=timeout,
            open_browser=open_browser,
            params=params,
        )

    def login_with_device(
        self,
        scope: str | None = None,
        *,
        prompt: Callable[[DeviceAuthorization], object] | None = None,
        timeout: float | None = None,
    ) -> Token:
        """Sign a person in on another device (RFC 8628): for SSH sessions and
        machines without a browser.

        Asks the device authorization endpoint for a code, shows the person where
        to enter it (``prompt``; by default printed to stderr), then polls the
        token endpoint at the server's interval (slower after ``slow_down``) until
        the person has signed in, refused, or the code expired.

        Args:
            scope: the scope to ask for.
            prompt: called once with a ``DeviceAuthorization`` (its
                ``verification_uri``, ``user_code``, ``verification_uri_complete``,
                ``expires_in``).
            timeout: stop polling after this many seconds, even if the code is
                still valid (``None``: until it expires).

        Raises:
            AccessDeniedError: the person refused (``access_denied``).
            SignInTimeoutError: the code expired (or ``timeout`` passed) first.
            SignInError: the device authorization endpoint refused or failed.
            TokenEndpointError: the token endpoint refused otherwise.

        Example:
            >>> token = eid.login_with_device(scope="openid")  # doctest: +SKIP
            To sign in, open this address in a browser on any device: ...
        """
        from ._device_code import poll_for_token, print_prompt, request_device_authorization

        device = request_device_authorization(
            self._endpoint._client_for(default_library()),  # token_client, or the private one
            self.metadata.device_authorization_endpoint,
            client_id=self.client_id,
            scope=scope,
            headers=self._api_key_header(),
            timeout=self._endpoint.timeout,
            secrets=(self._api_key,),
        )
        (prompt or print_prompt)(device)

        def poll(grant_type: str) -> Token:
            return self._endpoint.request_token(
                grant_type,
                {"device_code": device.device_code},
                default_library(),
                secrets=(device.device_code,),
            )

        return self._checked(poll_for_token(device, poll, timeout=timeout))

    # -- grants that need no person ------------------------------------------

    def client_credentials(self, scope: str | None = None, username: str | None = None) -> Token:
        """Run the client credentials grant: a token for the application itself.

        Args:
            scope: the scope to ask for.
            username: EmpowerID's extension: the token is issued for this person
                (the application needs "Enable Client Credential Flow").

        Example:
            >>> token = eid.client_credentials(scope="api")  # doctest: +SKIP
        """
        return self._checked(
            self._endpoint.request_token(
                "client_credentials", {"scope": scope, "username": username}, default_library()
            )
        )

    def password(
        self,
        username: str,
        password: str,
        scope: str | None = None,
        *,
        user_credentials: Literal["basic", "body"] = "basic",
    ) -> Token:
        """Run the resource owner password grant (RFC 9700 says not to use it:
        prefer ``login_in_browser`` or ``login_with_device`` where a person is at hand).

        Args:
            username, password: the person's credentials.
            scope: the scope to ask for.
            user_credentials: ``"basic"`` (EmpowerID's form: the person's
                credentials in HTTP Basic, the client's in the form body) or
                ``"body"`` (RFC 6749's form: ``username`` and ``password`` in the
                body, the client authenticating as configured).

        Example:
            >>> token = eid.password("jdoe", "correct horse", scope="openid")  # doctest: +SKIP
        """
        return self._checked(
            password_grant(
                self._endpoint,
                username,
                password,
                scope,
                default_library(),
                user_credentials=user_credentials,
            )
        )

    def jwt_bearer(self, assertion: str, scope: str) -> Token:
        """Run the JWT bearer grant (RFC 7523): a signed JWT ``assertion`` for a token.

        Example:
            >>> token = eid.jwt_bearer(signed_jwt, scope="api")  # doctest: +SKIP
        """
        _check_text("assertion", assertion)
        _check_text("scope", scope)
        return self._checked(
            self._endpoint.request_token(
                JWT_BEARER,
                {"assertion": assertion, "scope": scope},
                default_library(),
                secrets=(assertion,),
            )
        )

    def refresh(self, refresh_token: str, scope: str | None = None) -> Token:
        """Run the refresh grant once. ``EmpowerIDAuth`` does this for you, once
        per expiry however many callers there are; use this in scripts.

        Example:
            >>> token = eid.refresh(saved_refresh_token)  # doctest: +SKIP
        """
        _check_text("refresh_token", refresh_token)
        return self._checked(self._endpoint.refresh(refresh_token, default_library(), scope=scope))

    def token_exchange(self, subject_token: str, subject_token_type: str, scope: str) -> Token:
        """Run the token exchange grant (RFC 8693): another issuer's token (an
        Azure one, in EmpowerID's documentation) for an EmpowerID token.

        Example:
            >>> token = eid.token_exchange(  # doctest: +SKIP
            ...     azure_token, "urn:ietf:params:oauth:token-type:access_token", scope="api"
            ... )
        """
        _check_text("subject_token", subject_token)
        _check_text("subject_token_type", subject_token_type)
        _check_text("scope", scope)
        token = self._endpoint.request_token(
            TOKEN_EXCHANGE,
            {
                "subject_token": subject_token,
                "subject_token_type": subject_token_type,
                "scope": scope,
            },
            default_library(),
            secrets=(subject_token,),
            # EmpowerID documents client credentials in HTTP Basic here.
            client_auth="client_secret_basic",
        )
        return self._checked(token)

    # -- the endpoints around a token's life ---------------------------------

    def userinfo(self, access_token: str) -> dict[str, Any]:
        """What the server says of the person an access token belongs to: GET
        ``userinfo_endpoint`` with ``Authorization: Bearer``. EmpowerID's fields
        include ``id`` (the person's GUID), ``username``, ``first_name``,
        ``last_name`` and ``email``.

        Raises:
            EndpointError: the server refused (``status_code`` 401 and ``error``
                ``"invalid_token"`` for an expired or revoked token), answered
                something that is not a JSON object, or could not be reached.

        Example:
            >>> eid.userinfo(token.access_token)["username"]  # doctest: +SKIP
            'jdoe'
        """
        from ._lifecycle import userinfo

        _check_text("access_token", access_token)
        return userinfo(self._endpoint, self.metadata.userinfo_endpoint, access_token)

    def introspect(
        self,
        token: str,
        token_type_hint: Literal["access_token", "refresh_token"] = "access_token",
    ) -> dict[str, Any]:
        """Ask the server whether a token is active (RFC 7662; EmpowerID's
        ``tokeninfo_endpoint``), with the client's credentials in HTTP Basic.

        Args:
            token: an access or refresh token.
            token_type_hint: ``"access_token"`` or ``"refresh_token"``;
                EmpowerID requires one.

        Returns:
            The answer: ``{"active": False}``, or ``"active": True`` with
            EmpowerID's ``client_id``, ``token_type``, ``username``, ``exp``,
            ``iat``, ``nbf``, ``sub``, ``iss``...

        Raises:
            EndpointError: the server refused (``status_code`` 401: the client
                credentials), answered without a boolean ``active``, or could not
                be reached.
            ConfigurationError: a public client (no ``client_secret``) has no
                credentials to send; nothing is sent.

        Example:
            >>> eid.introspect(token.access_token)["active"]  # doctest: +SKIP
            True
        """
        from ._lifecycle import introspect, require_client_secret

        _check_text("token", token)
        _check_hint(token_type_hint)
        require_client_secret(self._endpoint, "introspection_endpoint")
        url = self.metadata.introspection_endpoint
        return introspect(self._endpoint, url, token, token_type_hint)

    def revoke(
        self,
        token: str,
        token_type_hint: Literal["access_token", "refresh_token"] = "access_token",
    ) -> None:
        """Revoke a token (RFC 7009; EmpowerID's ``tokenrevoke_endpoint``), with
        the client's credentials in HTTP Basic. Revoking a refresh token ends its
        grant; a token the server does not know is no error.

        Args:
            token: an access or refresh token.
            token_type_hint: ``"access_token"`` or ``"refresh_token"``;
                EmpowerID requires one.

        Raises:
            EndpointError: the server refused, or could not be reached.
            ConfigurationError: a public client (no ``client_secret``) has no
                credentials to send; nothing is sent.

        Example:
            >>> eid.revoke(token.refresh_token, token_type_hint="refresh_token")  # doctest: +SKIP
        """
        from ._lifecycle import require_client_secret, revoke

        _check_text("token", token)
        _check_hint(token_type_hint)
        require_client_secret(self._endpoint, "revocation_endpoint")
        revoke(self._endpoint, self.metadata.revocation_endpoint, token, token_type_hint)

    def logout_url(
        self,
        *,
        id_token_hint: str | None = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
        global_logout: bool = True,
    ) -> str:
        """The URL to send the person's browser to, to sign them out
        (``end_session_endpoint``, EmpowerID's ``/oauth/v2/ui/logout``).

        Args:
            id_token_hint: the ID token of the sign-in to end.
            post_logout_redirect_uri: where the server sends the browser
                afterwards (registered with the application); without
                ``id_token_hint`` the client ID is sent too.
            state: given back on that redirect.
            global_logout: EmpowerID's: end the person's EmpowerID session too
                (its default), not only this application's.

        Example:
            >>> eid.logout_url(  # doctest: +SKIP
            ...     id_token_hint=token.id_token,
            ...     post_logout_redirect_uri="https://app.example.com/signed-out",
            ... )
            'https://eid.example.com/oauth/v2/ui/logout?id_token_hint=...&global_logout=true'
        """
        from ._lifecycle import logout_url

        for name, value in (
            ("id_token_hint", id_token_hint),
            ("post_logout_redirect_uri", post_logout_redirect_uri),
            ("state", state),
        ):
            if value is not None:
                _check_text(name, value)
        if not isinstance(global_logout, bool):
            raise ConfigurationError("global_logout must be True or False")
        return logout_url(
            self.metadata.end_session_endpoint,
            self.client_id,
            id_token_hint=id_token_hint,
            post_logout_redirect_uri=post_logout_redirect_uri,
            state=state,
            global_logout=global_logout,
        )

    def close(self) -> None:
        """Close the HTTP clients this object created (never ``token_client``)."""
        self._endpoint.close()

    def __enter__(self) -> EmpowerIDClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------

    def _checked(self, token: Token, nonce: str | None = None) -> Token:
        """Every grant's token passes here: an ID token in it is validated
        (signature, ``aud``, ``exp``, ``iss``, and ``nonce`` for the code flow).

        Without an ID token there is nothing to check, ``nonce`` or not: the
        scope may not have asked for one."""
        if token.id_token is not None:
            self.validate_id_token(token.id_token, nonce=nonce)
        return token

    def validate_id_token(self, id_token: str, nonce: str | None = None) -> dict[str, Any]:
        """Validate an ID token of this server and return its claims.

        Every grant runs this on the ID token of its answer; call it for an ID
        token obtained elsewhere. Checked: the signature, against the server's
        keys (its JWKS, read once and again when a token names a key it lacks);
        the algorithm (asymmetric only: never ``none`` or HS256); ``aud`` holds
        this client's ID (and ``azp`` is it, with several audiences); ``exp``
        and ``iat`` (60 s of clock difference allowed); ``sub``; ``nonce`` when
        given; ``iss``: the ``issuer`` given to this client, or else either
        ``"EmpowerID"`` or the discovery document's ``issuer``.

        Raises:
            InvalidIDTokenError: a check failed (the message says which, and for
                the issuer both the values expected and the value seen), or the
                server's keys could not be read.

        Example:
            >>> claims = eid.validate_id_token(token.id_token)  # doctest: +SKIP
            >>> claims["sub"], claims["iss"]  # doctest: +SKIP
            ('c0a8f6d2-...', 'EmpowerID')
        """
        jwks_uri = self._explicit["jwks_uri"]
        if jwks_uri is not None and self._base_url is None:
            # Only the keys are known (no server base, so no discovery document).
            return self._id_tokens.validate(
                id_token, jwks_uri, None, issuer=self.issuer, nonce=nonce
            )
        if self._base_url is None:
            raise ConfigurationError(
                f"an ID token came with the tokens, but the server's keys to check it cannot "
                f"be found: token_endpoint {self.token_endpoint!r} does not end in "
                f"{TOKEN_PATH}; give server= instead, or jwks_uri="
            )
        metadata = self.metadata
        return self._id_tokens.validate(
            id_token, metadata.jwks_uri, metadata, issuer=self.issuer, nonce=nonce
        )

    def _fetch(self, url: str) -> Answer | Failure:
        """GET ``url`` (the JWKS) as the discovery document is read."""
        return send_token_request(
            self._endpoint._client_for(default_library()),
            url,
            {"Accept": "application/json", **self._api_key_header()},
            None,
            self._endpoint.timeout,
            method="GET",
        )

    def _api_key_header(self) -> dict[str, str]:
        return {} if self._api_key is None else {API_KEY_HEADER: self._api_key}

    def _discover(self) -> ServerMetadata:
        if self._base_url is None:
            missing = [name for name, url in self._explicit.items() if url is None]
            if missing:
                # Without a base URL there is neither a document nor default paths.
                raise ConfigurationError(
                    f"token_endpoint {self.token_endpoint!r} does not end in {TOKEN_PATH}, "
                    f"so the server's other endpoints cannot be found: give server= "
                    f"instead, or {', '.join(f'{name}=' for name in missing)}"
                )
            return ServerMetadata.defaults(self.token_endpoint)
        # token_client, or the private client token requests go through.
        return discover(
            self._base_url,
            self._endpoint._client_for(default_library()),
            timeout=self._endpoint.timeout,
            headers=self._api_key_header(),
        )


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string")


def _check_hint(token_type_hint: object) -> None:
    if token_type_hint not in ("access_token", "refresh_token"):
        raise ConfigurationError(
            f"token_type_hint must be 'access_token' or 'refresh_token', not {token_type_hint!r}"
        )
