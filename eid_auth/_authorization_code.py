"""The authorization code grant with PKCE (RFC 6749 section 4.1, RFC 7636), for a
person at a browser, and the loopback redirect of native apps (RFC 8252).

``authorization_request`` builds the URL to send the person to (with a fresh
``state``, ``nonce`` and S256 code challenge); ``AuthorizationRequest.code_from_redirect``
checks the redirect that comes back; ``sign_in_in_browser`` does it all for a
script: it listens on ``http://127.0.0.1:<port>``, opens the system browser, waits
(bounded) for the redirect and hands the code to the caller's exchange.

Imported only when a browser sign-in is asked for: ``webbrowser`` and
``http.server`` are imported inside the functions that need them.
"""

from __future__ import annotations

import html
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from ._exceptions import AccessDeniedError, ConfigurationError, SignInError, SignInTimeoutError

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

    from ._token import Token

__all__ = ["AuthorizationRequest", "authorization_request", "sign_in_in_browser"]

logger = logging.getLogger("eid_auth")

# RFC 7636 section 4.1: 43 to 128 characters; 64 letters and digits carry 380 bits.
_VERIFIER_LENGTH = 64
_STATE_LENGTH = 32
# How long the browser's last page waits for the code exchange to finish, at most.
_PAGE_WAIT = 120.0
# How long the caller waits for that page to be written before returning.
_PAGE_SENT_WAIT = 2.0
# A connection that sends no request (a browser's speculative connection) is
# dropped after this long, so it cannot hold a thread.
_IDLE_CONNECTION = 10.0


@dataclass(frozen=True)
class AuthorizationRequest:
    """One authorization request: the URL to send the person to, and what the
    redirect back and the code exchange need. Keep it until the redirect comes back
    (a web application keeps it in the person's session).

    Attributes:
        url: the authorization endpoint's URL with every parameter.
        redirect_uri: where the server sends the browser back.
        state: sent with the request; the redirect must carry the same value.
        nonce: sent with the request; the ID token must carry the same value.
        code_verifier: the PKCE secret (RFC 7636) the code exchange proves
            possession of; never shown in the ``repr``.

    Example:
        >>> request = authorization_request(
        ...     "https://eid.example.com/oauth/v2/ui/authorize", "my-app",
        ...     "http://127.0.0.1:8400/callback", "openid",
        ... )
        >>> request.url.startswith("https://eid.example.com/oauth/v2/ui/authorize?")
        True
        >>> "code_verifier" in repr(request), request.code_verifier in repr(request)
        (False, False)
    """

    url: str
    redirect_uri: str
    state: str
    nonce: str
    code_verifier: str = field(repr=False)

    def code_from_redirect(self, redirect_url: str) -> str:
        """The authorization code from the redirect back to ``redirect_uri``
        (its full URL, or just its query string), once its ``state`` is checked.

        Raises:
            AccessDeniedError: the redirect says ``error=access_denied``.
            SignInError: another ``error=``, a ``state`` that is not this
                request's, or no ``code``.

        Example:
            >>> code = request.code_from_redirect(callback_url)  # doctest: +SKIP
        """
        query = urlsplit(redirect_url).query if "?" in redirect_url else redirect_url
        params = dict(parse_qsl(query.lstrip("?"), keep_blank_values=True))
        return _code_from_params(params, self.state)


def authorization_request(
    authorization_endpoint: str,
    client_id: str,
    redirect_uri: str,
    scope: str | None,
    *,
    state: str | None = None,
    nonce: str | None = None,
    params: Mapping[str, str] | None = None,
) -> AuthorizationRequest:
    """A new authorization request, with a fresh PKCE verifier (S256), ``state``
    and ``nonce`` unless given; ``params`` adds parameters (``prompt``,
    ``login_hint``...)."""
    for name, value in (("redirect_uri", redirect_uri), ("state", state), ("nonce", nonce)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigurationError(f"{name} must be a non-empty string")
    if scope is not None and not isinstance(scope, str):
        raise ConfigurationError("scope must be a string such as 'openid profile'")
    reserved = {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce"}
    reserved |= {"code_challenge", "code_challenge_method"}
    clashing = sorted(reserved & set(params or {}))
    if clashing:
        raise ConfigurationError(f"params must not set {', '.join(clashing)}: this call sets it")
    code_verifier: str = generate_token(_VERIFIER_LENGTH)
    state_sent: str = state or generate_token(_STATE_LENGTH)
    nonce_sent: str = nonce or generate_token(_STATE_LENGTH)
    url = prepare_grant_uri(
        authorization_endpoint,
        client_id,
        "code",
        redirect_uri=redirect_uri,
        scope=scope,
        state=state_sent,
        nonce=nonce_sent,
        code_challenge=create_s256_code_challenge(code_verifier),
        code_challenge_method="S256",
        **dict(params or {}),
    )
    return AuthorizationRequest(
        url=url,
        redirect_uri=redirect_uri,
        state=state_sent,
        nonce=nonce_sent,
        code_verifier=code_verifier,
    )


def _code_from_params(params: Mapping[str, str], state: str) -> str:
    error = params.get("error")
    if error:
        # Quoted from the redirect: short, and never a secret of ours.
        error_code = error[:100]
        description = params.get("error_description") or None
        described = f": {description[:300]}" if description else ""
        if error == "access_denied":
            raise AccessDeniedError(
                f"the sign-in was refused (access_denied{described})",
                error=error_code,
                error_description=description and description[:300],
            )
        raise SignInError(
            f"the authorization server refused the sign-in ({error_code}{described})",
            error=error_code,
            error_description=description and description[:300],
        )
    if params.get("state") != state:
        raise SignInError(
            "the redirect's state is not the one this sign-in sent: it belongs to "
            "another sign-in, or was forged; start the sign-in again"
        )
    code = params.get("code")
    if not code:
        raise SignInError("the redirect carried neither a code nor an error")
    return code


def sign_in_in_browser(
    *,
    authorization_endpoint: str,
    client_id: str,
    scope: str | None,
    exchange: Callable[[str, AuthorizationRequest], Token],
    port: int = 0,
    redirect_path: str = "/callback",
    timeout: float = 300.0,
    open_browser: Callable[[str], object] | None = None,
    params: Mapping[str, str] | None = None,
) -> Token:
    """Listen on the loopback interface, send the person's browser to the
    authorization endpoint, wait for the redirect back and ``exchange`` its code.

    The listener takes ``port`` on 127.0.0.1 (0: the OS chooses one, RFC 8252
    section 7.3), answers only ``GET redirect_path``, and is closed before this
    returns. ``open_browser`` runs on a thread of its own (``webbrowser.open``
    waits for a ``BROWSER`` program that stays open); when it says it could not
    open a browser, the URL is printed to stderr for the person to open by hand.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError("port must be an int from 0 (the OS chooses) to 65535")
    if not isinstance(redirect_path, str) or not redirect_path.startswith("/"):
        raise ConfigurationError("redirect_path must be a path starting with '/'")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < float("inf")
    ):
        raise ConfigurationError("timeout must be a number of seconds > 0")
    listener = _LoopbackListener(port, redirect_path)
    try:
        request = authorization_request(
            authorization_endpoint,
            client_id,
            listener.redirect_uri,
            scope,
            params=params,
        )
        _open_in_browser(request.url, open_browser)
        logger.info(
            "waiting up to %gs for the sign-in to come back to %s", timeout, listener.redirect_uri
        )
        received = listener.wait(timeout)
        if received is None:
            raise SignInTimeoutError(
                f"no sign-in came back to {listener.redirect_uri} within {timeout:g}s; "
                "was the browser opened, and the sign-in finished? Start it again, or give "
                "a longer timeout"
            )
        try:
            code = _code_from_params(received, request.state)
            token = exchange(code, request)
        except SignInError as exc:
            listener.finish(False, _failure_text(exc))
            raise
        except BaseException:
            listener.finish(False, "The sign-in could not be completed.")
            raise
        listener.finish(True, "You are signed in. You can close this tab.")
        return token
    finally:
        listener.close()


def _failure_text(exc: SignInError) -> str:
    if isinstance(exc, AccessDeniedError):
        return "The sign-in was refused. You can close this tab."
    if exc.error:
        return f"The sign-in failed ({exc.error}). You can close this tab."
    return "The sign-in failed. You can close this tab."


def _open_in_browser(url: str, open_browser: Callable[[str], object] | None) -> None:
    if open_browser is None:
        import webbrowser

        open_browser = webbrowser.open

    def run() -> None:
        try:
            opened = open_browser(url)
        except Exception as exc:
            logger.warning("could not open a browser: %s", type(exc).__name__)
            opened = False
        if opened is False:
            # No browser here (an SSH session?): the person opens it elsewhere on this machine.
            print(
                f"Open this address in a browser on this machine to sign in:\n\n    {url}\n",
                file=sys.stderr,
                flush=True,
            )

    threading.Thread(target=run, name="eid_auth-open-browser", daemon=True).start()


class _LoopbackListener:
    """An HTTP listener on 127.0.0.1 that takes the first redirect to its path
    and answers it with a page once the caller says how the sign-in ended."""

    def __init__(self, port: int, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._page_ready = threading.Event()
        self._page_sent = threading.Event()
        self._received: dict[str, str] | None = None
        self._page: tuple[bool, str] = (False, "The sign-in was abandoned.")
        try:
            self._server: ThreadingHTTPServer = _make_server(self, port)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen on 127.0.0.1 port {port} for the redirect ({exc.strerror}); "
                "give port=0 to let the system choose a free one"
            ) from None
        self.redirect_uri = f"http://127.0.0.1:{self._server.server_port}{path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="eid_auth-redirect-listener",
            daemon=True,
        )
        self._thread.start()

    def wait(self, timeout: float) -> dict[str, str] | None:
        """The redirect's query parameters, or None when none came in time."""
        if not self._arrived.wait(timeout):
            return None
        return self._received

    def finish(self, succeeded: bool, text: str) -> None:
        """Say how the sign-in ended; the browser's page says so, then this returns."""
        self._page = (succeeded, text)
        self._page_ready.set()
        self._page_sent.wait(_PAGE_SENT_WAIT)

    def close(self) -> None:
        self._page_ready.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    # Called on the listener's threads.

    def take(self, path: str, query: str) -> tuple[int, str, str] | None:
        """The answer to ``GET path?query``: (status, title, text)."""
        if path != self._path:
            return None
        params = dict(parse_qsl(query, keep_blank_values=True))
        with self._lock:
            first = self._received is None
            if first:
                self._received = params
        if not first:
            return 200, "Sign-in", "This sign-in is over. You can close this tab."
        self._arrived.set()
        self._page_ready.wait(_PAGE_WAIT)
        succeeded, text = self._page
        return (200 if succeeded else 400), "Sign-in", text

    def sent(self) -> None:
        self._page_sent.set()


def _make_server(listener: _LoopbackListener, port: int) -> ThreadingHTTPServer:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        timeout = _IDLE_CONNECTION  # a connection that sends nothing is dropped

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            answer = listener.take(parts.path, parts.query)
            if answer is None:
                self._page(404, "Not found", "Nothing here.")
                return
            try:
                self._page(*answer)
            finally:
                listener.sent()

        def _page(self, status: int, title: str, text: str) -> None:
            # No secret is ever on the page: the code stays in the address bar only.
            body = (
                "<!doctype html><html><head><meta charset='utf-8'>"
                f"<title>{html.escape(title)}</title></head>"
                f"<body><p>{html.escape(text)}</p></body></html>"
            ).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                # The page's address holds the code: no Referer may carry it on.
                self.send_header("Referrer-Policy", "no-referrer")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the browser went away; nothing left to tell it

        def log_message(self, format: str, *args: Any) -> None:
            # The default writes the request line, code included, to stderr.
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def server_bind(self) -> None:
            # HTTPServer.server_bind looks the host name up, which can stall.
            import socketserver

            socketserver.TCPServer.server_bind(self)
            self.server_name = "127.0.0.1"
            self.server_port = int(self.server_address[1])

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a browser dropping a connection is no error of the sign-in

    return Server(("127.0.0.1", port), Handler)
