"""The middleware in front of a real Flask app, with assertions signed by a key made here."""

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from credbroker_wsgi import IdentityMiddleware, KeySet
from whoami_app import whoami_app

ISSUER = "http://broker.test/auth"
ALICE = "us-east-1:11111111-2222-3333-4444-555555555555"
MALLORY = "us-east-1:99999999-8888-7777-6666-555555555555"


class Broker:
    """Signs assertions like src/identity.rs does, and serves its JWKS to a KeySet."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.kid = "k1"
        self.fetches = 0

    def jwks(self, url):
        self.fetches += 1
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        return json.dumps({"keys": [dict(jwk, kid=self.kid, alg="ES256", use="sig")]}).encode()

    def assertion(self, sub=ALICE, key=None, headers=None, **overrides):
        now = int(time.time())
        claims = {
            "iss": ISSUER, "aud": "credbroker-app", "sub": sub, "provider": "dev",
            "logins_key": "127.0.0.1/dev-idp", "subject": "alice",
            "claims": {"email": "alice@example.com", "groups": ["ops"]},
            "iat": now, "exp": now + 3600,
        }
        claims.update(overrides)
        header = {"kid": self.kid, "typ": "credbroker-identity+jwt"}
        header.update(headers or {})
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers=header)


@pytest.fixture
def broker():
    return Broker()


def client(broker, **options):
    app = whoami_app("/me")
    app.wsgi_app = IdentityMiddleware(app.wsgi_app, ISSUER, keys=KeySet("unused", fetch=broker.jwks), **options)
    return app.test_client()


def lambda_event(identity_id):
    """What serverless-wsgi puts in environ['serverless.event'] for a REST API proxy event."""
    return {"requestContext": {"identity": {"cognitoIdentityId": identity_id,
                                            "cognitoAuthenticationType": "authenticated"}}}


@pytest.mark.parametrize("adapter_key", ["serverless.event", "apig_wsgi.full_event"])
def test_lambda_proxy_caller_gets_the_asserted_identity(broker, adapter_key):
    answer = client(broker).get("/me", headers={"X-Credbroker-Assertion": broker.assertion()},
                                environ_base={adapter_key: lambda_event(ALICE)})
    assert answer.status_code == 200, answer.text
    assert answer.json == {"identity_id": ALICE, "provider": "dev", "subject": "alice",
                           "claims": {"email": "alice@example.com", "groups": ["ops"]}, "headers": []}


def test_http_api_payload_v2_identity_is_trusted(broker):
    event = {"requestContext": {"authorizer": {"iam": {"cognitoIdentity": {"identityId": ALICE}}}}}
    answer = client(broker).get("/me", headers={"X-Credbroker-Assertion": broker.assertion()},
                                environ_base={"serverless.event": event})
    assert answer.json["identity_id"] == ALICE


def test_http_backend_trusts_the_gateway_header_only_when_configured(broker):
    headers = {"X-Credbroker-Assertion": broker.assertion(), "X-Credbroker-Identity-Id": ALICE}
    trusting = client(broker, trust_identity_header=True).get("/me", headers=headers)
    assert trusting.json["subject"] == "alice"
    # Not configured as a gateway-only backend: the header is anybody's, so it is not trusted.
    untrusting = client(broker).get("/me", headers=headers)
    assert untrusting.status_code == 403
    assert untrusting.json["code"] == "identity_mismatch"


def test_an_anonymous_caller_reaches_the_app_without_identity_headers(broker):
    answer = client(broker, trust_identity_header=True).get("/me", headers={"X-Credbroker-Subject": "root"})
    assert answer.json == {"anonymous": True, "headers": []}


def test_another_users_assertion_is_refused(broker):
    answer = client(broker).get("/me", headers={"X-Credbroker-Assertion": broker.assertion(sub=MALLORY)},
                                environ_base={"serverless.event": lambda_event(ALICE)})
    assert answer.status_code == 403
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json["code"] == "identity_mismatch"


@pytest.mark.parametrize("forge", [
    lambda b: b.assertion(key=ec.generate_private_key(ec.SECP256R1())),  # signed by another key
    lambda b: b.assertion(exp=int(time.time()) - 120),  # expired beyond the leeway
    lambda b: b.assertion(iss="http://evil.test/auth"),
    lambda b: b.assertion(aud="someone-else"),
    lambda b: b.assertion(headers={"typ": "JWT"}),  # e.g. an ID token
    lambda b: b.assertion(headers={"kid": "unknown"}),
    lambda b: jwt.encode({"sub": ALICE, "iss": ISSUER, "aud": "credbroker-app", "exp": 2**31},
                         "s" * 32, algorithm="HS256", headers={"kid": "k1", "typ": "credbroker-identity+jwt"}),
    lambda b: jwt.encode({"sub": ALICE, "iss": ISSUER, "aud": "credbroker-app", "exp": 2**31},
                         None, algorithm="none", headers={"kid": "k1", "typ": "credbroker-identity+jwt"}),
    lambda b: "not.a.jwt",
    lambda b: "x" * 9000,
])
def test_forged_assertions_are_refused(broker, forge):
    answer = client(broker).get("/me", headers={"X-Credbroker-Assertion": forge(broker)},
                                environ_base={"serverless.event": lambda_event(ALICE)})
    assert answer.status_code == 403, answer.text
    assert answer.json["code"] == "invalid_assertion"
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_missing_assertion_is_refused_unless_allowed(broker):
    event = {"serverless.event": lambda_event(ALICE)}
    assert client(broker).get("/me", environ_base=event).status_code == 403
    allowed = client(broker, allow_missing_assertion=True).get("/me", environ_base=event)
    assert allowed.json["identity_id"] == ALICE
    assert allowed.json["provider"] is None


def test_a_repeated_identity_header_is_refused(broker):
    environ = {"HTTP_X_CREDBROKER_IDENTITY_ID": f"{ALICE},{MALLORY}"}
    answer = client(broker, trust_identity_header=True).get(
        "/me", headers={"X-Credbroker-Assertion": broker.assertion()}, environ_base=environ)
    assert answer.status_code == 403
    assert answer.json["code"] == "identity_mismatch"


def test_keys_are_cached_and_refetched_on_an_unknown_kid_at_most_once_a_minute(broker):
    now = [1000.0]
    keys = KeySet("unused", fetch=broker.jwks, clock=lambda: now[0])
    app = whoami_app("/me")
    app.wsgi_app = IdentityMiddleware(app.wsgi_app, ISSUER, keys=keys)
    test = app.test_client()
    event = {"serverless.event": lambda_event(ALICE)}
    for _ in range(3):
        assert test.get("/me", headers={"X-Credbroker-Assertion": broker.assertion()},
                        environ_base=event).status_code == 200
    assert broker.fetches == 1
    # The broker rotates; within the minute the new kid is unknown and not refetched.
    broker.kid = "k2"
    rotated = broker.assertion()
    now[0] += 10
    assert test.get("/me", headers={"X-Credbroker-Assertion": rotated}, environ_base=event).status_code == 403
    assert broker.fetches == 1
    now[0] += 61
    assert test.get("/me", headers={"X-Credbroker-Assertion": rotated}, environ_base=event).status_code == 200
    assert broker.fetches == 2


def test_unreachable_keys_are_a_503_not_an_identity(broker):
    def down(url):
        raise OSError("connection refused")

    app = whoami_app("/me")
    app.wsgi_app = IdentityMiddleware(app.wsgi_app, ISSUER, keys=KeySet("unused", fetch=down))
    answer = app.test_client().get("/me", headers={"X-Credbroker-Assertion": broker.assertion()},
                                   environ_base={"serverless.event": lambda_event(ALICE)})
    assert answer.status_code == 503
    assert answer.json["code"] == "keys_unavailable"
