"""The endpoints around a token's life: userinfo, introspection (EmpowerID's
``tokeninfo``), revocation (its ``tokenrevoke``), and the logout URL.

EmpowerID's shapes: userinfo is a GET with ``Authorization: Bearer``;
tokeninfo and tokenrevoke are form POSTs with the client's credentials in HTTP
Basic and both ``token`` and ``token_type_hint``; revocation answers a ``null``
body. A public client (no secret) has no credentials to send there, so it is
told so before anything is sent. Every request goes through
``send_token_request`` (a deadline, a size cap) and is retried like a token
request (connection failures, 5xx and 429, with backoff and ``Retry-After``):
each is safe to repeat, revoking twice is revoking once.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ._exceptions import ConfigurationError, EndpointError, redact, secrets_in_answer
from ._libraries import default_library
from ._token_endpoint import API_KEY_HEADER, TokenEndpoint, basic_credentials
from ._transport import MAX_RESPONSE_BYTES, Answer, Failure

__all__ = [
    "TokenTypeHint",
    "introspect",
    "logout_url",
    "require_client_secret",
    "revoke",
    "userinfo",
]


TokenTypeHint = Literal["access_token", "refresh_token"]


def userinfo(endpoint: TokenEndpoint, url: str, access_token: str) -> dict[str, Any]:
    """The claims of the person ``access_token`` belongs to (GET with Bearer)."""
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    secrets = (access_token,)
    answer = _call(endpoint, "userinfo_endpoint", url, "GET", headers, None, secrets)
    return _json_object(answer, "userinfo_endpoint", url, _secrets(endpoint, secrets))


def introspect(
    endpoint: TokenEndpoint, url: str, token: str, token_type_hint: TokenTypeHint
) -> dict[str, Any]:
    """The tokeninfo answer for ``token``: ``{"active": false}`` or its claims."""
    headers, body = _token_form(endpoint, "introspection_endpoint", token, token_type_hint)
    answer = _call(endpoint, "introspection_endpoint", url, "POST", headers, body, (token,))
    info = _json_object(answer, "introspection_endpoint", url, _secrets(endpoint, (token,)))
    if not isinstance(info.get("active"), bool):
        raise EndpointError(
            f"introspection_endpoint {url} answered HTTP {answer.status} without a "
            'boolean "active": is it the tokeninfo endpoint?',
            endpoint="introspection_endpoint",
            status_code=answer.status,
        )
    return info


def revoke(endpoint: TokenEndpoint, url: str, token: str, token_type_hint: TokenTypeHint) -> None:
    """Revoke ``token``; a token the server does not know is no error (RFC 7009)."""
    headers, body = _token_form(endpoint, "revocation_endpoint", token, token_type_hint)
    answer = _call(endpoint, "revocation_endpoint", url, "POST", headers, body, (token,))
    # EmpowerID answers "null"; any 2xx is success, unless it names an error.
    document = _loads(answer.content)
    if isinstance(document, dict) and document.get("error"):
        raise _refused("revocation_endpoint", url, answer, document, _secrets(endpoint, (token,)))


def logout_url(
    end_session_endpoint: str,
    client_id: str,
    *,
    id_token_hint: str | None,
    post_logout_redirect_uri: str | None,
    state: str | None,
    global_logout: bool,
) -> str:
    """The URL that signs the person out (OpenID Connect RP-Initiated Logout, with
    EmpowerID's ``global_logout``); the endpoint's own query parameters are kept."""
    params: list[tuple[str, str]] = []
    if id_token_hint is not None:
        params.append(("id_token_hint", id_token_hint))
    if post_logout_redirect_uri is not None:
        params.append(("post_logout_redirect_uri", post_logout_redirect_uri))
        if id_token_hint is None:
            # Without the hint the server learns the client only from client_id.
            params.append(("client_id", client_id))
    if state is not None:
        params.append(("state", state))
    params.append(("global_logout", "true" if global_logout else "false"))
    parts = urlsplit(end_session_endpoint)
    query = parse_qsl(parts.query, keep_blank_values=True) + params
    return urlunsplit(parts._replace(query=urlencode(query)))


def require_client_secret(endpoint: TokenEndpoint, name: str) -> str:
    """The client secret tokeninfo and tokenrevoke need; a ``ConfigurationError``
    for a public client, before anything (discovery included) is sent."""
    secret = endpoint._client_secret  # the same client settings as the token endpoint
    if secret is None:
        # EmpowerID documents these endpoints with the client's credentials only:
        # a request without them would be refused with a 401 that says less.
        raise ConfigurationError(
            f"{name} needs the client's credentials (client_id and client_secret in "
            f"HTTP Basic, as EmpowerID documents it), and client {endpoint.client_id!r} "
            "has no client_secret (a public client). Give the EmpowerIDClient the "
            "application's client_secret, or call this from a confidential client"
        )
    return secret


# -- internals ------------------------------------------------------------------


def _token_form(
    endpoint: TokenEndpoint, name: str, token: str, token_type_hint: TokenTypeHint
) -> tuple[dict[str, str], bytes]:
    """tokeninfo's and tokenrevoke's request: the client in HTTP Basic, as
    EmpowerID documents it, which a public client cannot do."""
    secret = require_client_secret(endpoint, name)
    form = {"token": token, "token_type_hint": token_type_hint}
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
        "Authorization": f"Basic {basic_credentials(endpoint.client_id, secret)[0]}",
    }
    return headers, urlencode(form).encode()


def _secrets(endpoint: TokenEndpoint, secrets: tuple[str, ...]) -> tuple[str | None, ...]:
    return (
        *secrets,
        endpoint._client_secret,
        endpoint._api_key,
        *endpoint._basic_credentials,
    )


def _call(
    endpoint: TokenEndpoint,
    name: str,
    url: str,
    method: str,
    headers: dict[str, str],
    body: bytes | None,
    secrets: tuple[str, ...],
) -> Answer:
    """Send the request, with the token endpoint's retries; a 2xx answer or an error."""
    api_key = endpoint._api_key
    if api_key is not None:
        headers = {**headers, API_KEY_HEADER: api_key}

    def unavailable(detail: str, failure: Failure, attempt: int) -> Exception:
        return EndpointError(
            f"{name} {url} {detail}", endpoint=name, status_code=failure.status_code
        )

    answer, _, _ = endpoint.send_with_retries(
        url, headers, body, default_library(), what=name, unavailable=unavailable, method=method
    )
    if answer.too_large:
        raise EndpointError(
            f"{name} {url} answered HTTP {answer.status} with a body over "
            f"{MAX_RESPONSE_BYTES // 1024} KiB; is it the right URL?",
            endpoint=name,
            status_code=answer.status,
        )
    if not 200 <= answer.status < 300:
        raise _refused(name, url, answer, _loads(answer.content), _secrets(endpoint, secrets))
    return answer


_NOT_JSON: Any = object()


def _loads(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _json_object(
    answer: Answer, name: str, url: str, secrets: tuple[str | None, ...]
) -> dict[str, Any]:
    document = _loads(answer.content)
    if not isinstance(document, dict):
        raise EndpointError(
            f"{name} {url} answered HTTP {answer.status} with a body that is not a JSON "
            "object; is it the right URL?",
            endpoint=name,
            status_code=answer.status,
        )
    if document.get("error"):  # EmpowerID may say "error": "" on success
        raise _refused(name, url, answer, document, secrets)
    return document


def _refused(
    name: str, url: str, answer: Answer, document: Any, secrets: tuple[str | None, ...]
) -> EndpointError:
    # Only the error code and description are quoted, redacted; any other
    # field of the answer may be a token.
    secrets = (*secrets, *secrets_in_answer(document, successful=False))
    error = description = None
    if isinstance(document, dict):
        raw_error, raw_description = document.get("error"), document.get("error_description")
        if isinstance(raw_error, str) and raw_error:
            error = redact(raw_error, secrets)[:100]
        if isinstance(raw_description, str) and raw_description not in ("", "null"):
            description = redact(raw_description[:65536], secrets)[:500]
    if error is None and description is None:
        detail = "no OAuth error"
    else:
        detail = f"{error or 'no OAuth error code'}: {description or 'no description'}"
    hint = ""
    if answer.status == 401 and name == "userinfo_endpoint":
        hint = "; the access token is expired, revoked or not this server's"
    elif answer.status == 401:
        hint = "; check client_id and client_secret"
    return EndpointError(
        f"{name} {url} answered HTTP {answer.status} ({detail}){hint}",
        endpoint=name,
        status_code=answer.status,
        error=error,
        error_description=description,
    )
