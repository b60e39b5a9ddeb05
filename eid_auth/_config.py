"""Checks of what users configure, shared by ``EmpowerIDAuth`` and ``EmpowerIDClient``.

Every check runs at construction, so that a wrong argument fails where it was
written, with a message that says which argument and how to fix it, and never
quotes a secret.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import get_args
from urllib.parse import urlsplit

from ._exceptions import ConfigurationError
from ._http_clients import check_token_client
from ._token_endpoint import ClientAuthMethod, HTTPClient, TokenEndpoint

__all__ = [
    "TOKEN_PATH",
    "check_number",
    "endpoint_url",
    "is_header_safe",
    "server_base_url",
    "token_endpoint",
    "token_endpoint_url",
]

TOKEN_PATH = "/oauth/v2/token"


def server_base_url(server: object) -> str:
    """``server=``: EmpowerID's base URL (a path prefix behind a proxy is kept),
    without a trailing slash."""
    if not isinstance(server, str):
        raise ConfigurationError("server must be a URL string like 'https://host'")
    if "oauth" in urlsplit(server).path.lower().split("/"):
        # "https://host/oauth/v2/token" would become ".../oauth/v2/token/oauth/v2/token".
        raise ConfigurationError(
            f"server must be the EmpowerID base URL (like 'https://host'), not an OAuth "
            f"endpoint: {_without_userinfo(server)!r} has '/oauth' in its path. For the "
            "token endpoint's own URL, use token_endpoint= instead"
        )
    parts = urlsplit(server)
    if parts.query or parts.fragment:
        raise ConfigurationError(
            "server must be a base URL like 'https://host' (no query or fragment); "
            "use token_endpoint= for a full URL"
        )
    return endpoint_url("server", server.rstrip("/"))


def token_endpoint_url(token_endpoint: object, server: object) -> str:
    """The token endpoint URL, from exactly one of ``token_endpoint=`` and ``server=``."""
    if (token_endpoint is None) == (server is None):
        raise ConfigurationError(
            "give exactly one of token_endpoint='https://host/oauth/v2/token' or "
            "server='https://host'"
        )
    if server is not None:
        return server_base_url(server) + TOKEN_PATH
    if not isinstance(token_endpoint, str):
        raise ConfigurationError("token_endpoint must be a URL string")
    return endpoint_url("token_endpoint", token_endpoint)


def endpoint_url(name: str, url: object) -> str:
    """An absolute http(s) URL that may carry secrets: https, except on loopback."""
    if not isinstance(url, str):
        raise ConfigurationError(f"{name} must be a URL string")
    shown = _without_userinfo(url)  # what messages quote: never a password
    if not url.isprintable() or any(c.isspace() for c in url):
        # A newline or space in a URL is a pasting accident, and HTTP libraries
        # refuse it only when the first request is sent.
        raise ConfigurationError(
            f"{name} has a space or control character (a newline?) in it: {shown!r}"
        )
    parts = urlsplit(url)
    if parts.fragment:
        raise ConfigurationError(f"{name} {shown!r} must not have a #fragment")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"{name} {shown!r} is not an http(s) URL with a host")
    try:
        _ = parts.port  # "host:abc" or a port past 65535 raises here
        parts.hostname.encode("idna")
    except (ValueError, UnicodeError):
        raise ConfigurationError(f"{name} {shown!r} has an invalid host name or port") from None
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"{name} {shown!r} must not carry credentials")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigurationError(
            f"{name} {shown!r} must use https: the client secret and tokens would "
            "travel in clear text (plain http is allowed only for loopback hosts)"
        )
    return url


def _without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, even when unparseable."""
    return re.sub(r"(//)[^/?#]*@", r"\1***@", url)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _is_latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def check_number(name: str, value: object, *, minimum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigurationError(f"{name} must be a finite number >= {minimum:g}")


def token_endpoint(
    *,
    url: str,
    client_id: str,
    client_secret: str | None,
    client_auth: ClientAuthMethod,
    scope: str | None,
    api_key: str | None,
    timeout: float,
    max_retries: int,
    backoff_factor: float,
    token_client: HTTPClient | None,
    secret_required: bool,
) -> TokenEndpoint:
    """Check the client's settings and build its ``TokenEndpoint``.

    ``secret_required=False`` allows a public client (``client_secret=None``).
    """
    if not isinstance(client_id, str) or not client_id:
        raise ConfigurationError("client_id must be a non-empty string")
    if (client_secret is not None or secret_required) and (
        not isinstance(client_secret, str) or not client_secret
    ):
        raise ConfigurationError("client_secret must be a non-empty string")
    if client_auth not in get_args(ClientAuthMethod) or (
        client_auth == "none" and client_secret is not None
    ):
        raise ConfigurationError(
            f"client_auth must be 'client_secret_post' or 'client_secret_basic', "
            f"not {client_auth!r}"
        )
    if api_key is not None and (
        not isinstance(api_key, str) or not api_key or not is_header_safe(api_key)
    ):
        raise ConfigurationError(
            "api_key must be a non-empty string of printable ASCII characters, or None"
        )
    if (
        client_auth == "client_secret_basic"
        and isinstance(client_secret, str)
        and not all(_is_latin1(v) for v in (client_id, client_secret))
    ):
        raise ConfigurationError(
            "client_secret_basic needs client_id and client_secret in Latin-1 characters "
            "(HTTP Basic); use client_auth='client_secret_post' for others"
        )
    check_number("timeout", timeout, minimum=0.001)
    check_number("backoff_factor", backoff_factor, minimum=0.0)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError("max_retries must be an int >= 0")
    if token_client is not None:
        check_token_client(token_client)
    return TokenEndpoint(
        url=url,
        client_id=client_id,
        client_secret=client_secret,
        client_auth=client_auth,
        scope=scope,
        api_key=api_key,
        timeout=float(timeout),
        max_retries=max_retries,
        backoff_factor=float(backoff_factor),
        token_client=token_client,
    )
