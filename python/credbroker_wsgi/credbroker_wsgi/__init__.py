"""Who is calling, for WSGI apps behind credbroker (design and threat model: docs/identity.md).

API Gateway vouches for the caller's Cognito identity id; the broker's identity assertion
(``X-Credbroker-Assertion``, an ES256 JWT) carries the provider, the provider's subject and its
configured claims. This middleware trusts the assertion only when its signature checks out
against the broker's published keys and its ``sub`` equals the identity id API Gateway vouched
for, so a caller can neither forge one nor replay another user's.

Usage (Flask, also under serverless-wsgi)::

    from credbroker_wsgi import IdentityMiddleware, current_identity

    app.wsgi_app = IdentityMiddleware(app.wsgi_app, issuer="https://broker.example/auth")

    @app.get("/me")
    def me():
        return {"email": current_identity().claims.get("email")}

Verification is PyJWT's (with ``cryptography``); only the key cache is written here, because
PyJWT's ``PyJWKClient`` refetches on every unknown ``kid`` without a rate limit.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

import jwt

__all__ = ["Identity", "IdentityMiddleware", "KeySet", "current_identity", "ENVIRON_KEY"]

#: Where the middleware puts the verified :class:`Identity` (``None`` for an anonymous caller).
ENVIRON_KEY = "credbroker.identity"
#: The assertion's JWT ``typ`` and audience, as the broker signs them (src/identity.rs).
ASSERTION_TYPE = "credbroker-identity+jwt"
AUDIENCE = "credbroker-app"
#: The clock skew tolerated on ``exp`` and ``iat``.
LEEWAY_SECONDS = 30
#: Bounds: the assertion header, the JWKS document, the number of keys kept, the fetch time.
MAX_ASSERTION_BYTES = 8 * 1024
MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 16
FETCH_TIMEOUT_SECONDS = 5.0
#: Keys are refetched after this long, or on an unknown ``kid`` at most this often.
KEYS_MAX_AGE_SECONDS = 3600.0
REFETCH_INTERVAL_SECONDS = 60.0

# A Cognito identity id: `region:uuid` (the API's documented pattern is [\w-]+:[0-9a-f-]+).
_IDENTITY_ID = re.compile(r"[\w-]{1,50}:[0-9a-f-]{1,64}")
_ASSERTION_ENV = "HTTP_X_CREDBROKER_ASSERTION"
_IDENTITY_ID_ENV = "HTTP_X_CREDBROKER_IDENTITY_ID"
_HEADER_PREFIX = "HTTP_X_CREDBROKER_"
# Where Lambda adapters put the API Gateway event: serverless-wsgi, apig-wsgi.
_EVENT_KEYS = ("serverless.event", "apig_wsgi.full_event")


@dataclass(frozen=True)
class Identity:
    """The verified caller."""

    #: The Cognito identity id, as API Gateway verified it for the request's signature.
    identity_id: str
    #: The provider's configured name (``None`` when no assertion was sent and that is allowed).
    provider: Optional[str] = None
    #: The provider's subject (Entra: ``tid/oid``).
    subject: Optional[str] = None
    #: Exactly the claims the provider is configured to expose.
    claims: Mapping[str, Any] = field(default_factory=dict)
    #: The provider's Logins key.
    logins_key: Optional[str] = None


class Refused(Exception):
    """A request the middleware answers with 403 (``code`` is the stable problem code)."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.detail = detail


class KeySet:
    """The broker's identity keys (``GET /auth/identity-keys``): fetched on first use, kept
    for an hour, refetched on an unknown ``kid`` at most once a minute, bounded in size."""

    def __init__(self, url: str, fetch: Optional[Callable[[str], bytes]] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.url = url
        self._fetch = fetch or _fetch_bounded
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: Optional[float] = None

    def key(self, kid: str) -> jwt.PyJWK:
        """The P-256 key named ``kid``; raises :class:`Refused` when there is none."""
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > KEYS_MAX_AGE_SECONDS
            may_refetch = self._fetched_at is None or now - self._fetched_at > REFETCH_INTERVAL_SECONDS
            if stale or (kid not in self._keys and may_refetch):
                self._refresh(now)
            found = self._keys.get(kid)
        if found is None:
            raise Refused("invalid_assertion", f"no identity key with kid {kid!r}")
        return found

    def _refresh(self, now: float) -> None:
        try:
            document = json.loads(self._fetch(self.url))
            keys = document["keys"]
            if not isinstance(keys, list):
                raise ValueError("keys is not a list")
        except Exception as error:  # a broken answer keeps the keys we had
            if self._fetched_at is None:
                raise Refused("keys_unavailable", f"cannot read the identity keys: {error}") from None
            self._fetched_at = now
            return
        parsed: dict[str, jwt.PyJWK] = {}
        for jwk in keys[:MAX_KEYS]:
            if not (isinstance(jwk, dict) and jwk.get("kty") == "EC" and jwk.get("crv") == "P-256"
                    and isinstance(jwk.get("kid"), str)):
                continue
            try:
                parsed[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="ES256")
            except jwt.PyJWTError:
                continue
        self._keys = parsed
        self._fetched_at = now


def _fetch_bounded(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as answer:
        body = answer.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"the identity keys exceed {MAX_JWKS_BYTES} bytes")
    return body


class IdentityMiddleware:
    """WSGI middleware putting the verified caller in ``environ['credbroker.identity']``.

    ``issuer`` is the broker's ``/auth`` URL (the assertion's ``iss``); the keys come from
    ``keys_url`` (default ``{issuer}/identity-keys``).

    The identity id is trusted from the Lambda proxy event (serverless-wsgi's
    ``environ['serverless.event']``, apig-wsgi's
    ``environ['apig_wsgi.full_event']``) or, only with ``trust_identity_header=True``, from the
    ``X-Credbroker-Identity-Id`` header — for an HTTP backend reachable through the gateway
    alone, which sets that header from what it verified. Without a trusted identity id the caller
    is anonymous (``None``). With one, the assertion must be present and valid, else 403
    (``allow_missing_assertion=True`` accepts a request without one, e.g. a presigned URL, as the
    identity id alone). Every incoming ``X-Credbroker-*`` header is removed before the app runs.
    """

    def __init__(self, app: Callable, issuer: str, keys_url: Optional[str] = None, *,
                 trust_identity_header: bool = False, allow_missing_assertion: bool = False,
                 keys: Optional[KeySet] = None):
        self.app = app
        self.issuer = issuer
        self.keys = keys or KeySet(keys_url or issuer.rstrip("/") + "/identity-keys")
        self.trust_identity_header = trust_identity_header
        self.allow_missing_assertion = allow_missing_assertion

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        try:
            identity = self.identify(environ)
        except Refused as refused:
            return _problem(start_response, refused)
        for name in [name for name in environ if name.startswith(_HEADER_PREFIX)]:
            del environ[name]
        environ[ENVIRON_KEY] = identity
        return self.app(environ, start_response)

    def identify(self, environ: Mapping[str, Any]) -> Optional[Identity]:
        """The caller of the request in ``environ``; raises :class:`Refused`."""
        identity_id = self._trusted_identity_id(environ)
        assertion = environ.get(_ASSERTION_ENV)
        if identity_id is None:
            if assertion:
                raise Refused("identity_mismatch",
                              "an identity assertion came without an identity id vouched for by the gateway")
            return None
        if not assertion:
            if self.allow_missing_assertion:
                return Identity(identity_id=identity_id)
            raise Refused("invalid_assertion", "the X-Credbroker-Assertion header is missing")
        claims = self._verify(assertion)
        if claims["sub"] != identity_id:
            raise Refused("identity_mismatch", "the assertion is for another identity than the request's signer")
        return Identity(
            identity_id=identity_id,
            provider=_optional_str(claims.get("provider")),
            subject=_optional_str(claims.get("subject")),
            claims=claims.get("claims") if isinstance(claims.get("claims"), dict) else {},
            logins_key=_optional_str(claims.get("logins_key")),
        )

    def _trusted_identity_id(self, environ: Mapping[str, Any]) -> Optional[str]:
        event = next((environ[key] for key in _EVENT_KEYS if isinstance(environ.get(key), dict)), None)
        if event is not None:
            found = _event_identity_id(event)
        elif self.trust_identity_header:
            found = environ.get(_IDENTITY_ID_ENV)
        else:
            return None
        if not found:
            return None
        # A repeated header arrives joined with commas: refuse rather than pick one.
        if not isinstance(found, str) or not _IDENTITY_ID.fullmatch(found):
            raise Refused("identity_mismatch", "the gateway's identity id is malformed or repeated")
        return found

    def _verify(self, assertion: str) -> dict:
        if len(assertion) > MAX_ASSERTION_BYTES:
            raise Refused("invalid_assertion", f"the assertion exceeds {MAX_ASSERTION_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as error:
            raise Refused("invalid_assertion", f"malformed assertion: {error}") from None
        if header.get("alg") != "ES256":
            raise Refused("invalid_assertion", f"expected alg ES256, found {header.get('alg')!r}")
        if header.get("typ") != ASSERTION_TYPE:
            raise Refused("invalid_assertion", f"expected typ {ASSERTION_TYPE}, found {header.get('typ')!r}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Refused("invalid_assertion", "the assertion names no kid")
        key = self.keys.key(kid)
        try:
            return jwt.decode(
                assertion, key, algorithms=["ES256"], audience=AUDIENCE, issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "sub", "exp", "iat"], "strict_aud": True},
            )
        except jwt.PyJWTError as error:
            raise Refused("invalid_assertion", f"the assertion does not verify: {error}") from None


def _event_identity_id(event: Mapping[str, Any]) -> Optional[str]:
    """``requestContext.identity.cognitoIdentityId`` (REST API, payload 1.0), else the HTTP API's
    ``requestContext.authorizer.iam.cognitoIdentity.identityId`` (payload 2.0)."""
    context = event.get("requestContext") or {}
    rest = (context.get("identity") or {}).get("cognitoIdentityId")
    if rest:
        return rest
    iam = ((context.get("authorizer") or {}).get("iam") or {})
    return (iam.get("cognitoIdentity") or {}).get("identityId")


def _optional_str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _problem(start_response: Callable, refused: Refused) -> list[bytes]:
    status = 503 if refused.code == "keys_unavailable" else 403
    body = json.dumps({
        "type": f"urn:credbroker:problem:{refused.code}",
        "title": "Service Unavailable" if status == 503 else "Forbidden",
        "status": status,
        "detail": refused.detail,
        "code": refused.code,
    }).encode()
    start_response(f"{status} {'Service Unavailable' if status == 503 else 'Forbidden'}", [
        ("Content-Type", "application/problem+json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ])
    return [body]


def current_identity() -> Optional[Identity]:
    """In a Flask request: the verified caller, or ``None`` for an anonymous one."""
    from flask import request  # Flask is optional: only this helper needs it

    return request.environ.get(ENVIRON_KEY)
