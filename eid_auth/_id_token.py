"""ID tokens: validated as OpenID Connect Core 1.0 (section 3.1.3.7) says, with
EmpowerID's issuer rule.

The signature is checked against the server's JWK Set (its ``jwks_uri``), read
once and kept; a ``kid`` the kept keys lack makes it read again (the server
rolled its keys over), at most once a minute, so that tokens with made-up kids
cannot make this client hammer the server. Only asymmetric algorithms are
accepted (those the discovery document lists, RS256 if it lists none): ``none``
is refused, and so is HS256, whose key would be the JWKS's public key that
anyone can read.

EmpowerID's tokens say ``"iss": "EmpowerID"`` by default while its discovery
document may state ``"issuer": "https://<server>"``: unless an issuer is
configured, either is accepted.

joserfc (and cryptography under it) is imported on first validation, so that
``import eid_auth`` and grants without ID tokens never load them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._discovery import ServerMetadata
from ._exceptions import InvalidIDTokenError
from ._transport import MAX_RESPONSE_BYTES, Answer, Failure

if TYPE_CHECKING:
    from joserfc.jwk import Key

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "EMPOWERID_ISSUER",
    "JWKS_REFETCH_INTERVAL",
    "KEYS_MAX_AGE",
    "LEEWAY",
    "IDTokenValidator",
    "expected_issuers",
    "signing_algorithms",
]

logger = logging.getLogger("eid_auth")

# The iss of EmpowerID's ID tokens unless an administrator set another.
EMPOWERID_ISSUER = "EmpowerID"
# Seconds of clock difference tolerated on exp and iat.
LEEWAY = 60.0
# A kid the kept keys lack reads the JWKS again at most this often (seconds).
JWKS_REFETCH_INTERVAL = 60.0
# Kept keys older than this (seconds) are read again, so a withdrawn key stops counting.
KEYS_MAX_AGE = 3600.0
# The algorithms a public JWKS can verify; HS* and none are never among them.
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
# Longest claim value quoted in a message (a hostile iss could be megabytes).
_QUOTE_LIMIT = 120

Fetch = Callable[[str], "Answer | Failure"]


def signing_algorithms(metadata: ServerMetadata | None) -> list[str]:
    """The algorithms accepted for ID token signatures: the asymmetric ones the
    discovery document lists in ``id_token_signing_alg_values_supported``, RS256
    when it lists none (EmpowerID signs with RS256)."""
    listed = (
        None if metadata is None else metadata.raw.get("id_token_signing_alg_values_supported")
    )
    if isinstance(listed, list):
        accepted = [alg for alg in ASYMMETRIC_ALGORITHMS if alg in listed]
        if accepted:
            return accepted
    return ["RS256"]


def expected_issuers(issuer: str | None, metadata: ServerMetadata | None) -> list[str]:
    """``[issuer]`` when configured; else ``"EmpowerID"`` and the discovery
    document's ``issuer`` (EmpowerID may state one and sign with the other)."""
    if issuer is not None:
        return [issuer]
    found = [EMPOWERID_ISSUER]
    discovered = None if metadata is None else metadata.issuer
    if discovered is not None and discovered != EMPOWERID_ISSUER:
        found.append(discovered)
    return found


@dataclass(frozen=True)
class _KeySet:
    url: str
    keys: tuple[Key, ...]
    read_at: float  # time.monotonic()


class IDTokenValidator:
    """Validates the ID tokens of one client (``client_id``), keeping the
    server's keys between validations. Thread-safe.

    ``fetch(url)`` sends one GET (deadline and size cap included) and returns
    its ``Answer`` or ``Failure``.
    """

    def __init__(self, client_id: str, fetch: Fetch) -> None:
        self._client_id = client_id
        self._fetch = fetch
        self._lock = threading.Lock()
        self._keys: _KeySet | None = None
        self._refetched_at: float | None = None

    def validate(
        self,
        id_token: str,
        jwks_uri: str,
        metadata: ServerMetadata | None,
        *,
        issuer: str | None = None,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """The claims of ``id_token`` once every check has passed; ``metadata``
        (the discovery document) says which algorithms and issuer to expect, and
        is ``None`` when only ``jwks_uri`` is known.

        Raises:
            InvalidIDTokenError: a check failed, or the keys could not be read.
        """
        if not isinstance(id_token, str) or not id_token:
            raise InvalidIDTokenError("the ID token must be a non-empty string")
        header = _header(id_token)
        algorithms = signing_algorithms(metadata)
        alg = header.get("alg")
        if alg == "none":
            raise InvalidIDTokenError("the ID token is unsigned (alg 'none'), which is refused")
        if alg not in algorithms:
            raise InvalidIDTokenError(
                f"the ID token is signed with alg {_quote(alg)}, which is not accepted: "
                f"only {', '.join(algorithms)} (asymmetric algorithms the server's discovery "
                "document lists; HS* would be keyed with a public key)"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidIDTokenError("the ID token's kid is not a string")
        key = self._key_for(jwks_uri, kid, alg)
        claims = _verified_claims(id_token, key, alg, kid, jwks_uri)
        self._check_claims(claims, expected_issuers(issuer, metadata), nonce)
        return claims

    # -- keys ---------------------------------------------------------------------------

    def _key_for(self, url: str, kid: str | None, alg: str) -> Key:
        with self._lock:
            now = time.monotonic()
            keys = self._keys
            if keys is None or keys.url != url:
                keys = self._keys = self._read(url, now)
            elif now - keys.read_at >= KEYS_MAX_AGE:
                keys = self._keys = self._read_or_keep(keys, now)
            key = _pick(keys.keys, kid, alg)
            if key is None and kid is not None:
                key = self._after_rollover(url, kid, alg, now)
        if key is None:
            raise InvalidIDTokenError(
                f"the ID token has no kid, and the server's JWKS at {url} does not hold "
                f"exactly one key for {alg}"
            )
        return key

    def _after_rollover(self, url: str, kid: str, alg: str, now: float) -> Key:
        """The key for an unknown ``kid``: the server may have rolled its keys
        over since they were read. Lock held."""
        missing = f"the ID token's key (kid {_quote(kid)}, {alg}) is not in the server's JWKS"
        last = self._refetched_at
        if last is not None and now - last < JWKS_REFETCH_INTERVAL:
            raise InvalidIDTokenError(
                f"{missing} at {url}, read {now - last:.0f}s ago for an unknown kid (read "
                f"again at most once every {JWKS_REFETCH_INTERVAL:g}s)"
            )
        self._refetched_at = now
        keys = self._keys = self._read(url, now, for_kid=kid)
        key = _pick(keys.keys, kid, alg)
        if key is None:
            raise InvalidIDTokenError(f"{missing} at {url}, read again just now")
        return key

    def _read_or_keep(self, kept: _KeySet, now: float) -> _KeySet:
        try:
            return self._read(kept.url, now)
        except InvalidIDTokenError as exc:
            logger.warning("kept the server's keys read an hour ago: %s", exc)
            return _KeySet(kept.url, kept.keys, now)

    def _read(self, url: str, now: float, *, for_kid: str | None = None) -> _KeySet:
        why = "" if for_kid is None else f" (again, for the unknown kid {_quote(for_kid)})"
        answer = self._fetch(url)
        if isinstance(answer, Failure):
            problem = answer.reason
        elif answer.too_large:
            problem = f"the answer is over {MAX_RESPONSE_BYTES // 1024} KiB"
        elif answer.status != 200:
            problem = f"HTTP {answer.status}"
        else:
            keys, problem = _parse_jwks(answer.content)
            if keys:
                logger.debug("read %d key(s) from the JWKS at %s%s", len(keys), url, why)
                return _KeySet(url, tuple(keys), now)
        raise InvalidIDTokenError(
            f"the ID token could not be checked: the server's keys (JWKS at {url}) could "
            f"not be read{why}: {problem}"
        )

    # -- claims -------------------------------------------------------------------------

    def _check_claims(
        self, claims: Mapping[str, Any], issuers: Sequence[str], nonce: str | None
    ) -> None:
        iss = claims.get("iss")
        if iss not in issuers:
            expected = " or ".join(_quote(value) for value in issuers)
            raise InvalidIDTokenError(
                f"the ID token's issuer (iss) is {_quote(iss)}, expected {expected}; if that "
                f"is the issuer your EmpowerID server is set up with, pass "
                f"EmpowerIDClient(issuer=...) with it"
            )
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or self._client_id not in audiences:
            raise InvalidIDTokenError(
                f"the ID token is not for this client: its audience (aud) is {_quote(aud)}, "
                f"which does not hold client_id {_quote(self._client_id)}"
            )
        azp = claims.get("azp")
        if (azp is not None or len(audiences) > 1) and azp != self._client_id:
            raise InvalidIDTokenError(
                f"the ID token names several audiences and its authorized party (azp) is "
                f"{_quote(azp)}, not client_id {_quote(self._client_id)}"
            )
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise InvalidIDTokenError("the ID token has no subject (sub)")
        now = time.time()
        exp = _number(claims, "exp")
        if now > exp + LEEWAY:
            raise InvalidIDTokenError(
                f"the ID token expired {now - exp:.0f}s ago (exp; {LEEWAY:g}s of clock "
                "difference allowed)"
            )
        iat = _number(claims, "iat")
        if iat > now + LEEWAY:
            raise InvalidIDTokenError(
                f"the ID token was issued {iat - now:.0f}s in the future (iat; {LEEWAY:g}s "
                "of clock difference allowed): check the clocks"
            )
        if nonce is not None:
            sent = claims.get("nonce")
            if not isinstance(sent, str):
                raise InvalidIDTokenError(
                    "the ID token has no nonce, but the sign-in sent one: it may be replayed"
                )
            if not hmac.compare_digest(sent.encode("utf-8"), nonce.encode("utf-8")):
                raise InvalidIDTokenError(
                    "the ID token's nonce is not the one the sign-in sent: it may be replayed"
                )


def _header(id_token: str) -> dict[str, Any]:
    parts = id_token.split(".")
    if len(parts) == 5:
        raise InvalidIDTokenError("the ID token is encrypted (JWE), which is not supported")
    if len(parts) != 3:
        raise InvalidIDTokenError("the ID token is not a signed JWT (three dot-separated parts)")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        header = None
    if not isinstance(header, dict):
        raise InvalidIDTokenError("the ID token's header is not base64url-encoded JSON")
    return header


def _verified_claims(
    id_token: str, key: Key, alg: str, kid: str | None, url: str
) -> dict[str, Any]:
    from joserfc import jwt
    from joserfc.errors import BadSignatureError, JoseError

    try:
        claims = jwt.decode(id_token, key, algorithms=[alg]).claims
    except BadSignatureError:
        which = "its key" if kid is None else f"key {_quote(kid)}"
        raise InvalidIDTokenError(
            f"the ID token's signature does not verify with {which} of the server's JWKS "
            f"at {url}: it was altered, or not signed by this server"
        ) from None
    except (JoseError, ValueError, TypeError) as exc:
        # joserfc's error names say what was wrong; their text could quote the token.
        raise InvalidIDTokenError(
            f"the ID token could not be decoded ({type(exc).__name__})"
        ) from None
    return dict(claims)


def _parse_jwks(content: bytes) -> tuple[list[Key], str]:
    """The usable signing keys of a JWK Set, or none and why."""
    from joserfc.errors import JoseError
    from joserfc.jwk import JWKRegistry

    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        return [], "the answer is not JSON"
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return [], 'the answer is not a JWK Set ({"keys": [...]})'
    keys: list[Key] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # "oct" keys (shared secrets) have no place in a public JWKS
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys.append(JWKRegistry.import_key(entry))
        except (JoseError, ValueError, TypeError) as exc:
            logger.warning(
                "ignored key %s of the JWKS: %s", _quote(entry.get("kid")), type(exc).__name__
            )
    if not keys:
        return [], f"it holds no usable signing key (RSA, EC or OKP) among {len(entries)}"
    return keys, ""


def _pick(keys: Sequence[Key], kid: str | None, alg: str) -> Key | None:
    kty = _KEY_TYPE[alg[:2]]
    fitting = [
        key
        for key in keys
        if key.key_type == kty
        and key.get("alg") in (None, alg)
        and (kid is None or key.kid == kid)
    ]
    # Without a kid, OpenID Connect allows only a JWKS with one key to choose from.
    return fitting[0] if len(fitting) == 1 else None


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidIDTokenError(f"the ID token's {name} is missing or not a number")
    return float(value)


def _quote(value: object) -> str:
    """A claim or header value for a message, cut short."""
    text = repr(value)
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."
