"""Secrets a server echoes back in an error are redacted however it encoded them:
raw, percent-encoded in either case, JSON-escaped, HTML-escaped, or one inside
another, and before a long body is cut. The echoes come from a real loopback
server; the secrets hold the characters that encodings change (``/``, ``+``,
``=``, ``&``, ``?``, a space). The rest of an answer is shown as text that
encodes as UTF-8: JSON escapes decoded, a lone surrogate replaced."""

from __future__ import annotations

import base64
import html
import html.entities
import json
import logging
import re
from collections.abc import Callable, Iterator
from urllib.parse import quote, quote_plus

import pytest

from eid_auth import EmpowerIDAuth, TokenEndpointError
from eid_auth._exceptions import redact
from eid_auth.testing import EmpowerIDTestServer, FaultSpec

AuthFactory = Callable[..., EmpowerIDAuth]

CLIENT_ID = "redaction-client"
CLIENT_SECRET = "Zm9v/YmFy+c2Vj=cmV0&k?y"
REFRESH_TOKEN = "rt/9+Q= x:y@z;w"
API_KEY = "ak/1+2=3#4,5"
SECRETS = (CLIENT_SECRET, REFRESH_TOKEN, API_KEY)


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def _json_unicode(text: str, hex_format: str) -> str:
    return "".join(c if c.isalnum() else "\\u" + format(ord(c), hex_format) for c in text)


_NAMES = {
    value: "&" + name
    for name, value in sorted(html.entities.html5.items(), reverse=True)
    if name.endswith(";") and len(value) == 1
}


def _html_named(text: str) -> str:
    # &sol; &plus; &equals; &amp; &quest; &colon; &commat; ... where a name exists.
    return "".join(c if c.isalnum() else _NAMES.get(c, f"&#{ord(c)};") for c in text)


ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "form": quote_plus,
    "form-lowercase-hex": lambda s: _lower_hex(quote_plus(s)),
    "percent-%20": lambda s: quote(s, safe=""),
    "percent-lowercase-hex": lambda s: _lower_hex(quote(s, safe="")),
    "json-escaped-slash": lambda s: s.replace("/", "\\/"),  # PHP's json_encode
    "json-unicode-upper": lambda s: _json_unicode(s, "04X"),  # .NET
    "json-unicode-lower": lambda s: _json_unicode(s, "04x"),
    "html-special-chars": html.escape,  # PHP's htmlspecialchars
    "html-decimal": lambda s: "".join(c if c.isalnum() else f"&#{ord(c)};" for c in s),
    "html-hex-lower": lambda s: "".join(c if c.isalnum() else f"&#x{ord(c):x};" for c in s),
    "html-hex-upper": lambda s: "".join(c if c.isalnum() else f"&#x{ord(c):X};" for c in s),
    "html-named": _html_named,
    "json-escaped-form": lambda s: quote_plus(s).replace("%", "\\u0025"),
    "html-escaped-form": lambda s: quote_plus(s).replace("%", "&#37;"),
    "form-of-form": lambda s: quote_plus(quote_plus(s)),
    "json-slash-of-lowercase-form": lambda s: _lower_hex(quote(s, safe="/")).replace("/", "\\/"),
}


@pytest.fixture(scope="module")
def echo_server() -> Iterator[EmpowerIDTestServer]:
    with EmpowerIDTestServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


@pytest.fixture
def auth(echo_server: EmpowerIDTestServer) -> Iterator[EmpowerIDAuth]:
    auth = EmpowerIDAuth(
        token_endpoint=echo_server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH_TOKEN,
        api_key=API_KEY,
        max_retries=0,
    )
    yield auth
    auth.close()


def _carriers(echo: str) -> dict[str, bytes]:
    """Three ways a server quotes what it was sent."""
    return {
        "html-page": f"<html><body><p>Bad request: {echo}</p></body></html>".encode(),
        "json-field": ('{"error":"invalid_request","request":"' + echo + '"}').encode(),
        "error-description": json.dumps(
            {"error": "invalid_request", "error_description": "got " + echo}
        ).encode(),
    }


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_an_echoed_secret_is_redacted_in_every_encoding(
    echo_server: EmpowerIDTestServer,
    auth: EmpowerIDAuth,
    eid_logs: list[logging.LogRecord],
    encoding: str,
) -> None:
    encode = ENCODINGS[encoding]
    echo = " & ".join(
        f"{name}={encode(secret)}" for name, secret in zip("csk", SECRETS, strict=True)
    )
    for carrier, body in _carriers(echo).items():
        eid_logs.clear()
        echo_server.fail_next(FaultSpec(status=400, body=body), count=1)
        with pytest.raises(TokenEndpointError) as caught:
            auth.refresh()
        error = caught.value
        texts = [str(error), repr(error), repr(vars(error))]
        texts += [record.getMessage() for record in eid_logs]
        for secret in SECRETS:
            for needle in {secret, encode(secret)}:
                assert not any(needle in text for text in texts), (carrier, needle)
        assert str(error).count("[redacted]") == 3, carrier
        assert "c=[redacted]" in str(error), carrier  # only the secrets went


def test_an_encoded_secret_is_redacted_before_the_body_is_cut(
    echo_server: EmpowerIDTestServer, auth: EmpowerIDAuth
) -> None:
    # HTML-escaped, the secret is four times longer and straddles the cut at 200.
    for encode in (ENCODINGS["html-hex-upper"], ENCODINGS["json-unicode-lower"]):
        encoded = encode(CLIENT_SECRET)
        body = ("<html>" + "x" * 180 + encoded + "</html>").encode()
        echo_server.fail_next(FaultSpec(status=400, body=body), count=1)
        with pytest.raises(TokenEndpointError) as caught:
            auth.refresh()
        assert encoded[:12] not in str(caught.value)
        assert "[redacted]" in str(caught.value)


def test_redaction_survives_cutting_and_form_encoding() -> None:
    secret = "Zm9v+YmFy/c2VjcmV0="
    with EmpowerIDTestServer(client_secret=secret) as server:
        refresh_token = server.issue_grant()["refresh_token"]
        auth = EmpowerIDAuth(
            token_endpoint=server.token_endpoint,
            client_id=server.client_id,
            client_secret=secret,
            refresh_token=refresh_token,
            max_retries=0,
        )
        for body in (
            "<html>" + "x" * 180 + refresh_token + "</html>",
            "bad request body: client_secret=" + quote_plus(secret),
        ):
            server.fail_next(FaultSpec(status=400, body=body.encode()), count=1)
            with pytest.raises(Exception, match="HTTP 400") as caught:
                auth.refresh()
            message = str(caught.value)
            assert refresh_token[:12] not in message
            assert quote_plus(secret) not in message
            assert secret not in message
        auth.close()


def test_a_basic_header_echo_is_redacted(echo_server: EmpowerIDTestServer) -> None:
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    auth = EmpowerIDAuth(
        token_endpoint=echo_server.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        refresh_token=REFRESH_TOKEN,
        client_auth="client_secret_basic",
        max_retries=0,
    )
    for echo in (basic, basic.replace("/", "\\/"), quote(basic, safe="")):
        body = f"<html>Authorization: Basic {echo}</html>".encode()
        echo_server.fail_next(FaultSpec(status=400, body=body), count=1)
        with pytest.raises(TokenEndpointError) as caught:
            auth.refresh()
        assert echo not in str(caught.value)
        assert basic not in str(caught.value)
    auth.close()


def test_json_escaped_and_basic_header_echoes_are_redacted() -> None:
    secret = "Zm9v+YmFy/c2VjcmV0"
    with EmpowerIDTestServer(client_secret=secret) as server:
        basic = base64.b64encode(f"{server.client_id}:{secret}".encode()).decode()
        auth = EmpowerIDAuth(
            token_endpoint=server.token_endpoint,
            client_id=server.client_id,
            client_secret=secret,
            refresh_token=server.issue_grant()["refresh_token"],
            client_auth="client_secret_basic",
            max_retries=0,
        )
        escaped = secret.replace("+", "\\u002B")  # as .NET's JSON writer escapes it
        for body in (
            '{"error": "invalid_request", "received": "' + escaped + '"}',
            "<html>bad header Authorization: Basic " + basic + "</html>",
        ):
            server.fail_next(FaultSpec(status=400, body=body.encode()), count=1)
            with pytest.raises(Exception, match="HTTP 400") as caught:
                auth.refresh()
            for needle in (secret, escaped, basic):
                assert needle not in str(caught.value)
        auth.close()


def test_escaped_emoji_in_an_error_stays_encodable(
    server: EmpowerIDTestServer, auth_factory: AuthFactory
) -> None:
    auth = auth_factory(max_retries=0)
    body = b'{"error": "invalid_request", "message": "bad scope \\ud83d\\ude00 \\ud83d"}'
    server.fail_next(FaultSpec(status=400, body=body), count=1)
    with pytest.raises(Exception, match="HTTP 400") as caught:
        auth.refresh()
    str(caught.value).encode("utf-8")  # no lone surrogates
    assert "\U0001f600" in str(caught.value)


# -- redact() itself ---------------------------------------------------------------------


def test_text_without_secrets_is_left_as_it_was() -> None:
    text = "a &amp; b %41 c \\/ d &nosuchentity; %zz & %"
    assert redact(text, [CLIENT_SECRET, "zzzzzz"]) == text


def test_json_unicode_escapes_are_shown_decoded() -> None:
    assert redact("caf\\u00e9 \\ud83d\\ude00 \\ud83d", []) == "café \U0001f600 \ufffd"


def test_short_secrets_are_not_searched_for() -> None:
    assert redact("abc abc", ["abc"]) == "abc abc"


def test_a_secret_that_holds_an_escape_is_found_under_another_encoding() -> None:
    # Percent-decoding everything would turn "%2F" into "/" and miss it.
    secret = "ab%2F/cd"
    assert redact('{"got": "ab%2F\\/cd"}', [secret]) == '{"got": "[redacted]"}'
    assert redact("got ab%252F%2Fcd", [secret]) == "got [redacted]"
    assert redact("got ab%2F&#47;cd", [secret]) == "got [redacted]"


def test_overlapping_and_nested_secrets_leave_nothing_behind() -> None:
    text = "x abcdefgh y abcd%2Bef z"
    assert redact(text, ["abcdef", "defgh", "cd+ef"]) == "x [redacted] y ab[redacted] z"
    assert redact("secretsecret", ["secret"]) == "[redacted]"


def test_many_secrets_are_all_found() -> None:
    # Past a few dozen secrets (every string of a hostile answer) a faster
    # search is used: it must find the same.
    secrets = [f"value-{i:04d}/x" for i in range(500)]
    text = " ".join(quote(s, safe="") for s in secrets[::7])
    redacted = redact(text, secrets)
    assert "value" not in redacted
    assert redacted == " ".join(["[redacted]"] * len(secrets[::7]))
