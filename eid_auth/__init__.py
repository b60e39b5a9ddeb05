"""OAuth 2.0 bearer auth for requests and httpx with EmpowerID's refresh grant.

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

from ._auth import EmpowerIDAuth
from ._client import EmpowerIDClient
from ._discovery import ServerMetadata
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

__version__ = "0.1.0.dev0"

# Records go nowhere unless the application configures logging (library convention).
logging.getLogger("eid_auth").addHandler(logging.NullHandler())

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
