"""Server metadata: EmpowerID's discovery document, its own key names, its default paths.

EmpowerID publishes its OpenID Connect discovery document under ``/oauth``
(``/oauth/.well-known/openid-configuration``), not at the host's root, and names
two endpoints its own way (``tokeninfo_endpoint``, ``tokenrevoke_endpoint``).
Older servers publish a document without the device, introspection or
revocation endpoints, or none at all: what a document does not say falls back
to the paths EmpowerID documents.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ._config import endpoint_url
from ._exceptions import ConfigurationError
from ._transport import MAX_RESPONSE_BYTES, Failure, HTTPClient, send_token_request

__all__ = ["DISCOVERY_PATH", "ServerMetadata", "discover"]

logger = logging.getLogger("eid_auth")

DISCOVERY_PATH = "/oauth/.well-known/openid-configuration"

# EmpowerID's documented paths, used for whatever its document does not list.
_DEFAULT_PATHS = {
    "token_endpoint": "/oauth/v2/token",
    "authorization_endpoint": "/oauth/v2/ui/authorize",
    "device_authorization_endpoint": "/oauth/v2/device/authorize",
    "introspection_endpoint": "/oauth/v2/tokeninfo",
    "revocation_endpoint": "/oauth/v2/tokenrevoke",
    "userinfo_endpoint": "/oauth/v2/userinfo",
    "end_session_endpoint": "/oauth/v2/ui/logout",
    "jwks_uri": "/oauth/.well-known/jwks",
}
# EmpowerID's own names for two standard endpoints; a standard name wins.
_EMPOWERID_NAMES = {
    "tokeninfo_endpoint": "introspection_endpoint",
    "tokenrevoke_endpoint": "revocation_endpoint",
}


@dataclass(frozen=True)
class ServerMetadata:
    """Where an EmpowerID server's OAuth endpoints are, in RFC 8414's names.

    Attributes:
        issuer: the ``issuer`` the document states (``None`` without a document).
            EmpowerID may put another value in its tokens' ``iss`` (by default
            the string ``"EmpowerID"``): issuer checks are configurable.
        token_endpoint, authorization_endpoint, device_authorization_endpoint,
        introspection_endpoint, revocation_endpoint, userinfo_endpoint,
        end_session_endpoint, jwks_uri: the endpoint URLs.
        discovered: whether a discovery document was read (else every endpoint
            is EmpowerID's default path).
        raw: the discovery document as served (empty without one).

    Example:
        >>> meta = ServerMetadata.defaults("https://eid.example.com")
        >>> meta.introspection_endpoint
        'https://eid.example.com/oauth/v2/tokeninfo'
    """

    token_endpoint: str
    authorization_endpoint: str
    device_authorization_endpoint: str
    introspection_endpoint: str
    revocation_endpoint: str
    userinfo_endpoint: str
    end_session_endpoint: str
    jwks_uri: str
    issuer: str | None = None
    discovered: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def defaults(cls, base_url: str) -> ServerMetadata:
        """EmpowerID's documented endpoints under ``base_url`` (``https://host``)."""
        base = base_url.rstrip("/")
        urls: dict[str, Any] = {name: base + path for name, path in _DEFAULT_PATHS.items()}
        return cls(**urls)

    @classmethod
    def from_document(cls, base_url: str, document: Mapping[str, Any]) -> ServerMetadata:
        """Read a discovery document; what it lacks (or gives unusably) is a default.

        An endpoint that is not an https URL (or http on loopback) is ignored with
        a warning: tokens and the client secret would be sent there.
        """
        values: dict[str, Any] = {}
        for key, value in document.items():
            name = _EMPOWERID_NAMES.get(key, key)
            if name in _DEFAULT_PATHS and (name == key or name not in document):
                try:
                    values[name] = endpoint_url(f"the discovery document's {key}", value)
                except ConfigurationError as exc:
                    logger.warning("ignored an endpoint of the discovery document: %s", exc)
        issuer = document.get("issuer")
        return replace(
            cls.defaults(base_url),
            **values,
            issuer=issuer if isinstance(issuer, str) and issuer else None,
            discovered=True,
            raw=dict(document),
        )

    def with_endpoints(self, **endpoints: str | None) -> ServerMetadata:
        """This metadata with the endpoints given explicitly (``None``: keep)."""
        known = {f.name for f in fields(self)}
        given = {name: url for name, url in endpoints.items() if url is not None}
        unknown = set(given) - known
        assert not unknown, unknown
        urls: dict[str, Any] = {name: endpoint_url(name, url) for name, url in given.items()}
        return replace(self, **urls)


def discover(
    base_url: str, client: HTTPClient, *, timeout: float, headers: Mapping[str, str]
) -> ServerMetadata:
    """Read ``base_url``'s discovery document; EmpowerID's defaults if there is none.

    A server without a reachable, well-formed document is not an error: older
    EmpowerID servers publish none, and its default paths then apply. Why the
    document was not used is logged (INFO for a 404, WARNING otherwise).
    """
    url = base_url.rstrip("/") + DISCOVERY_PATH
    answer = send_token_request(
        client, url, {"Accept": "application/json", **headers}, None, timeout, method="GET"
    )
    reason: str | None = None
    document: Any = None
    if isinstance(answer, Failure):
        reason = answer.reason
    elif answer.too_large:
        reason = f"the document is over {MAX_RESPONSE_BYTES // 1024} KiB"
    elif answer.status != 200:
        reason = f"HTTP {answer.status}"
    else:
        try:
            document = json.loads(answer.content)
        except (ValueError, RecursionError):
            reason = "the document is not JSON"
        else:
            if not isinstance(document, dict):
                reason = "the document is not a JSON object"
    if reason is not None:
        level = logging.INFO if reason == "HTTP 404" else logging.WARNING
        logger.log(
            level,
            "no usable discovery document at %s (%s); using EmpowerID's default paths",
            url,
            reason,
        )
        return ServerMetadata.defaults(base_url)
    return ServerMetadata.from_document(base_url, document)
