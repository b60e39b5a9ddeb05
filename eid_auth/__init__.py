"""OAuth 2.0 bearer auth for requests, httpx, httpx2 and aiohttp with EmpowerID's
refresh grant.

Example:
    >>> import httpx
    >>> from eid_auth import EmpowerIDAuth
    >>> auth = EmpowerIDAuth(
    ...     server="https://eid.example.com",
    ...     client_id="my-app", client_secret="s3cret", refresh_token="rt-123",
    ... )
    >>> client = httpx.Client(auth=auth)  # also requests.Session().auth = auth
"""

import logging
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    AccessDeniedError,
    ConfigurationError,
    EmpowerIDAuthError,
    EndpointError,
    InvalidClientError,
    InvalidGrantError,
    InvalidIDTokenError,
    InvalidTokenResponseError,
    MissingRefreshTokenError,
    SignInError,
    SignInTimeoutError,
    TokenEndpointError,
    TokenEndpointUnavailableError,
    TokenResponseTooLargeError,
    TokenStoreError,
)
from ._token import Token

if TYPE_CHECKING:
    from ._auth import EmpowerIDAuth
    from ._client import EmpowerIDClient
    from ._discovery import ServerMetadata

__version__ = "0.1.0.dev0"

# Records go nowhere unless the application configures logging (library convention).
logging.getLogger("eid_auth").addHandler(logging.NullHandler())

# Loaded on first use: ``import eid_auth`` (a CLI's fast path, a serverless cold
# start) pays only for the names it touches, and never for an HTTP library.
_LAZY = {
    "EmpowerIDAuth": "._auth",
    "EmpowerIDClient": "._client",
    "ServerMetadata": "._discovery",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eid_auth' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AccessDeniedError",
    "ConfigurationError",
    "EmpowerIDAuth",
    "EmpowerIDAuthError",
    "EmpowerIDClient",
    "EndpointError",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidIDTokenError",
    "InvalidTokenResponseError",
    "MissingRefreshTokenError",
    "ServerMetadata",
    "SignInError",
    "SignInTimeoutError",
    "Token",
    "TokenEndpointError",
    "TokenEndpointUnavailableError",
    "TokenResponseTooLargeError",
    "TokenStoreError",
    "__version__",
]
