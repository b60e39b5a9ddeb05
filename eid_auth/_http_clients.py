"""How each HTTP client library sends one of eid_auth's own requests.

``_transport`` bounds an attempt in time and size whatever the library; this
module is what differs between libraries: sending a request without the
client's own auth, netrc or redirects, handing over the answer as raw
(undecoded) chunks, closing it, and shutting its socket down from another
thread at the deadline. Each library is imported only when its client is used.
aiohttp, which only runs on an event loop, is in ``_aiohttp_transport``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigurationError
from ._libraries import library_of

if TYPE_CHECKING:
    from typing import TypeAlias

    import aiohttp
    import httpx
    import httpx2
    import requests

    from ._aiohttp_transport import PrivateSession

    HTTPClient: TypeAlias = (
        requests.Session | httpx.Client | httpx2.Client | aiohttp.ClientSession | PrivateSession
    )
else:
    HTTPClient = object

__all__ = [
    "CHUNK_BYTES",
    "HTTPClient",
    "Opened",
    "check_token_client",
    "library_errors",
    "new_client",
    "open_response",
]

CHUNK_BYTES = 16 * 1024

# What token_client= accepts, for the error message.
_ACCEPTED = "a requests.Session, an httpx.Client, an httpx2.Client or an aiohttp.ClientSession"


@dataclass(frozen=True)
class Opened:
    """An answer whose status and headers are in, and whose body is not read yet."""

    status: int
    headers: Mapping[str, str]
    chunks: Iterable[bytes]  # the body as sent: still compressed, if it is
    close: Callable[[], None]  # without reading the rest: the connection is dropped
    shut_down: Callable[[], None]  # from another thread: wakes a blocked read


def new_client(library: ModuleType) -> HTTPClient:
    """A client of ``library`` configured from the environment (proxies, CA bundles)."""
    if library.__name__ == "aiohttp":
        from ._aiohttp_transport import PrivateSession

        return PrivateSession()
    if library.__name__ == "requests":
        return library.Session()  # type: ignore[no-any-return]
    return library.Client()  # type: ignore[no-any-return]


def check_token_client(client: object) -> None:
    """ConfigurationError unless ``client`` is a client eid_auth can send with."""
    library = library_of(client)
    module = sys.modules.get(library) if library else None
    if library == "requests" and module is not None and isinstance(client, module.Session):
        return
    if library in ("httpx", "httpx2") and module is not None and isinstance(client, module.Client):
        return
    if library == "aiohttp" and module is not None and isinstance(client, module.ClientSession):
        from ._aiohttp_transport import check_session

        check_session(client)
        return
    raise ConfigurationError(
        f"token_client must be {_ACCEPTED} (token requests are sent from a "
        "thread, so not an httpx.AsyncClient or httpx2.AsyncClient; an aiohttp "
        f"session is used on its own event loop), not {type(client).__name__}"
    )


def open_response(
    client: HTTPClient,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
) -> Opened:
    """Send the request through ``client`` and return once the headers are in."""
    if _is_private_session(client) or library_of(client) == "aiohttp":
        return _open_with_aiohttp(client, method, url, headers, body, timeout)
    if library_of(client) == "requests":
        return _open_with_requests(client, method, url, headers, body, timeout)
    return _open_with_httpx(client, method, url, headers, body, timeout)


def _is_private_session(client: object) -> bool:
    # Looked up, not imported: _aiohttp_transport loads asyncio, which a program
    # on requests or httpx never needs, and until it is loaded no PrivateSession exists.
    module = sys.modules.get(f"{__package__}._aiohttp_transport")
    return module is not None and isinstance(client, module.PrivateSession)


def _no_auth(r: requests.PreparedRequest) -> requests.PreparedRequest:
    # Keeps a session's own ``auth`` and netrc from touching the request.
    return r


def _open_with_requests(
    session: Any,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
) -> Opened:
    r = session.request(
        method,
        url,
        data=body,
        headers=headers,
        timeout=timeout,
        allow_redirects=False,
        auth=_no_auth,
        stream=True,
    )

    def shut_down() -> None:
        _shut_down(getattr(getattr(r.raw, "connection", None), "sock", None))

    return Opened(
        r.status_code,
        r.headers,
        r.raw.stream(CHUNK_BYTES, decode_content=False),
        r.close,
        shut_down,
    )


def _open_with_httpx(
    client: Any, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
) -> Opened:
    # httpx or httpx2: the same API under two module names.
    library = sys.modules[library_of(client) or "httpx"]
    request = client.build_request(method, url, content=body, headers=headers, timeout=timeout)
    response = client.send(
        request,
        stream=True,
        follow_redirects=False,
        auth=library.Auth(),  # the base class adds nothing: no client auth, no netrc
    )

    def shut_down() -> None:
        stream = response.extensions.get("network_stream")
        _shut_down(None if stream is None else stream.get_extra_info("socket"))

    if response.is_stream_consumed:
        # Read and decoded already (an httpx.MockTransport's answer).
        retry_after = response.headers.get("Retry-After")
        kept = {} if retry_after is None else {"Retry-After": retry_after}
        return Opened(response.status_code, kept, [response.content], response.close, shut_down)
    return Opened(
        response.status_code, response.headers, response.iter_raw(), response.close, shut_down
    )


def _open_with_aiohttp(
    client: object,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
) -> Opened:
    from ._aiohttp_transport import open_response as open_with_aiohttp

    opened = open_with_aiohttp(client, method, url, headers, body, timeout)
    return Opened(
        opened.response.status,
        opened.response.headers,
        opened.chunks(CHUNK_BYTES),
        opened.close,
        opened.shut_down,
    )


def _shut_down(sock: object) -> None:
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # closed already
            sock.shutdown(socket.SHUT_RDWR)


def library_errors(*names: str) -> tuple[type[BaseException], ...]:
    """The exception classes named ``"module.Class"`` whose modules are loaded:
    an error of a library nobody imported cannot have been raised."""
    found: list[type[BaseException]] = []
    for dotted in names:
        module_name, _, attribute = dotted.rpartition(".")
        cls = getattr(sys.modules.get(module_name), attribute, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)
