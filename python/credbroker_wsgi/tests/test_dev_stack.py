"""A real Flask app (werkzeug on 127.0.0.1) behind `credbroker dev --upstream`, driven with the
credbroker CLI: the app sees the identity through the middleware; forged identity is refused.

Needs the built binary (`cargo build`; tests/run builds it first), or CREDBROKER_BIN."""

import json
import os
import pathlib
import subprocess
import threading

import pytest
from werkzeug.serving import make_server

from credbroker_wsgi import IdentityMiddleware
from whoami_app import whoami_app

REPO = pathlib.Path(__file__).resolve().parents[3]
BINARY = os.environ.get("CREDBROKER_BIN", str(REPO / "target" / "debug" / "credbroker"))


def cli(*args, check=True):
    done = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")})
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def stack():
    assert os.access(BINARY, os.X_OK), f"build the credbroker binary first ({BINARY})"
    app = whoami_app("/whoami")
    upstream = make_server("127.0.0.1", 0, app, threaded=True)
    broker = subprocess.Popen([BINARY, "dev", "--listen", "127.0.0.1:0", "--upstream",
                               f"http://127.0.0.1:{upstream.server_port}/"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = broker.stdout.readline()
        assert "Open http://" in banner, banner
        base = banner.split("Open ", 1)[1].strip().rstrip("/")

        # An HTTP backend reachable through the gateway only: it trusts the gateway's header.
        app.wsgi_app = IdentityMiddleware(app.wsgi_app, issuer=f"{base}/auth", trust_identity_header=True)
        thread = threading.Thread(target=upstream.serve_forever, daemon=True)
        thread.start()
        yield base
    finally:
        broker.terminate()
        broker.wait(timeout=10)
        upstream.shutdown()


def sign_in(base, tmp_path, sub, *claims):
    args = ["token", "--idp", f"{base}/dev-idp", "--sub", sub]
    for claim in claims:
        args += ["--claim", claim]
    token = cli(*args).stdout.strip()
    answer = json.loads(cli("signin", "--broker", base, "--id-token", token).stdout)
    path = tmp_path / f"{sub}.json"
    path.write_text(json.dumps(answer))
    return str(path), answer


def curl(base, credentials, *headers):
    args = ["curl", "--credentials", credentials]
    for header in headers:
        args += ["-H", header]
    return cli(*args, f"{base}/api/whoami", check=False)


def test_the_app_sees_the_signed_in_identity_through_the_middleware(stack, tmp_path):
    credentials, answer = sign_in(stack, tmp_path, "hal", 'groups=["ops"]')
    done = curl(stack, credentials, f"X-Credbroker-Assertion: {answer['identityAssertion']}")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["identity_id"] == answer["identityId"]
    assert seen["subject"] == "hal"
    assert seen["provider"] == "dev"
    assert seen["claims"].get("groups") == ["ops"]
    assert seen["headers"] == []  # the app's own view holds no X-Credbroker-* header


def test_forged_identity_headers_from_the_caller_are_refused(stack, tmp_path):
    alice, alice_answer = sign_in(stack, tmp_path, "alice")
    _, mallory_answer = sign_in(stack, tmp_path, "mallory")
    # Claiming to be mallory by header: the gateway replaces the id with alice's, and alice's
    # assertion still matches it — the forged header has no effect.
    done = curl(stack, alice, f"X-Credbroker-Identity-Id: {mallory_answer['identityId']}",
                "X-Credbroker-Subject: mallory",
                f"X-Credbroker-Assertion: {alice_answer['identityAssertion']}")
    assert json.loads(done.stdout)["subject"] == "alice"
    # Replaying mallory's assertion with alice's credentials: refused.
    done = curl(stack, alice, f"X-Credbroker-Identity-Id: {mallory_answer['identityId']}",
                f"X-Credbroker-Assertion: {mallory_answer['identityAssertion']}")
    assert done.returncode != 0
    assert json.loads(done.stdout)["code"] == "identity_mismatch"
    # A tampered assertion (claims changed, signature kept): refused.
    head, payload, signature = alice_answer["identityAssertion"].split(".")
    forged = ".".join([head, mallory_answer["identityAssertion"].split(".")[1], signature])
    done = curl(stack, alice, f"X-Credbroker-Assertion: {forged}")
    assert json.loads(done.stdout)["code"] in ("invalid_assertion", "identity_mismatch")
    # No assertion at all: refused (the middleware's default).
    done = curl(stack, alice)
    assert json.loads(done.stdout)["code"] == "invalid_assertion"
