"""The two Lambda binaries under cargo-lambda's runtime emulator, fed the API Gateway event
fixtures of tests/data/: real ID tokens from the dev provider of `credbroker dev`, exchanged at
its local identity pool (Cognito Identity protocol over loopback).

The emulator runs with --only-lambda-apis and the binaries are started here, so the ones
already built (CREDBROKER_BIN_DIR, default target/debug) are reused instead of rebuilt.
"""

import base64
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
BIN_DIR = Path(os.environ.get("CREDBROKER_BIN_DIR", ROOT / "target" / "debug"))
DEV_POOL_ID = "us-east-1:00000000-0000-4000-8000-00000000dec0"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, process):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError as error:
            if getattr(error, "code", None):  # an HTTP status: the server answers
                return
            time.sleep(0.2)
    pytest.fail(f"{url} never answered")


def wait_for_port(port, process):
    """The emulator answers nothing on `/`, so readiness is an accepted connection."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"nothing listens on port {port}")


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`credbroker dev` (dev provider + local pool) and the emulator's runtime API."""
    dev_port, runtime_port = free_port(), free_port()
    dev = subprocess.Popen(
        [BIN_DIR / "credbroker", "dev", "--listen", f"127.0.0.1:{dev_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    emulator = subprocess.Popen(
        ["cargo", "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(runtime_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{dev_port}/auth/config", dev)
        wait_for_port(runtime_port, emulator)
        issuer = f"http://127.0.0.1:{dev_port}/dev-idp"
        config = tmp_path_factory.mktemp("emulator") / "credbroker.toml"
        config.write_text(
            f'[identity_pool]\nid = "{DEV_POOL_ID}"\nendpoint = "http://127.0.0.1:{dev_port}/cognito-identity"\n'
            f'[providers.corp]\nkind = "oidc"\nissuer = "{issuer}"\naudiences = ["credbroker-dev"]\n'
            'claims = ["email", "groups"]\n'
            '[authorizer]\ncontext_claims = ["groups"]\n'
            '[[authorizer.allow]]\nroutes = ["GET /api/*"]\n'
            '[[authorizer.allow]]\nwhen = "groups:admins"\nroutes = ["* /admin/*"]\n'
        )
        yield {"issuer": issuer, "runtime_port": runtime_port, "config": config}
    finally:
        stop(emulator)
        stop(dev)


def token(stack, *claims):
    args = [BIN_DIR / "credbroker", "token", "--idp", stack["issuer"], "--sub", "alice"]
    for claim in claims:
        args += ["--claim", claim]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


class Function:
    """One Lambda binary attached to the emulator's runtime API."""

    def __init__(self, stack, binary):
        self.stack = stack
        env = dict(
            os.environ,
            AWS_LAMBDA_FUNCTION_NAME="_",
            AWS_LAMBDA_FUNCTION_VERSION="1",
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
            AWS_LAMBDA_RUNTIME_API=f"http://127.0.0.1:{stack['runtime_port']}/.rt",
            CREDBROKER_CONFIG_FILE=str(stack["config"]),
            # As template.yaml sets it for the sign-in function.
            AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH="true",
        )
        self.process = subprocess.Popen([BIN_DIR / binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def invoke(self, fixture, id_token=""):
        """Sends tests/data/{fixture} (with ${ID_TOKEN} replaced); returns (ok, output)."""
        event = (DATA / fixture).read_text().replace("${ID_TOKEN}", id_token)
        with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
            file.write(event)
            file.flush()
            done = subprocess.run(
                ["cargo", "lambda", "invoke", "_", "-A", "127.0.0.1", "-P", str(self.stack["runtime_port"]),
                 "--data-file", file.name],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )
        return done.returncode == 0, done.stdout + done.stderr

    def answer(self, fixture, id_token=""):
        ok, output = self.invoke(fixture, id_token)
        assert ok, output
        return json.loads(output)


@pytest.fixture
def signin(stack):
    function = Function(stack, "credbroker-signin")
    yield function
    stop(function.process)


@pytest.fixture
def authorizer(stack):
    function = Function(stack, "credbroker-authorizer")
    yield function
    stop(function.process)


def test_signin_serves_the_client_config(signin, stack):
    answer = signin.answer("apigw-rest-auth-config.json")
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert [p["name"] for p in body["providers"]] == ["corp"]
    assert body["providers"][0]["issuer"] == stack["issuer"]


def body_bytes(answer):
    """The response body as API Gateway would send it (lambda_http base64-encodes binary types)."""
    if answer.get("isBase64Encoded"):
        return base64.b64decode(answer["body"])
    return answer["body"].encode()


@pytest.mark.parametrize(
    "fixture, file, content_type",
    [
        ("apigw-rest-web-index.json", "index.html", "text/html; charset=utf-8"),
        ("apigw-rest-web-module.json", "credbroker.js", "text/javascript; charset=utf-8"),
    ],
)
def test_signin_serves_the_embedded_client_under_web(signin, fixture, file, content_type):
    answer = signin.answer(fixture)
    assert answer["statusCode"] == 200, answer
    assert body_bytes(answer) == (ROOT / "web" / file).read_bytes()
    headers = {name.lower(): values for name, values in answer["multiValueHeaders"].items()}
    assert headers["content-type"] == [content_type]
    assert headers["cache-control"] == ["no-cache"]
    assert headers["etag"][0].startswith('"')
    assert headers["x-content-type-options"] == ["nosniff"]
    assert headers["x-frame-options"] == ["SAMEORIGIN"]
    assert headers["referrer-policy"] == ["same-origin"]
    [policy] = headers["content-security-policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'self'" in policy
    assert "unsafe-inline" not in policy


def test_signin_exchanges_a_valid_token_for_credentials(signin, stack):
    answer = signin.answer("apigw-rest-signin.json", token(stack, 'groups=["admins"]'))
    assert answer["statusCode"] == 200, answer
    body = json.loads(answer["body"])
    assert body["identityId"].startswith("us-east-1:")
    assert body["credentials"]["accessKeyId"] and body["credentials"]["sessionToken"]
    assert body["claims"]["groups"] == ["admins"]
    assert answer["multiValueHeaders"]["cache-control"] == ["no-store"]


def test_signin_refuses_a_malformed_token_with_problem_json(signin):
    answer = signin.answer("apigw-rest-signin-malformed-token.json")
    assert answer["statusCode"] == 401
    assert answer["multiValueHeaders"]["content-type"] == ["application/problem+json"]
    assert json.loads(answer["body"])["code"] == "malformed_token"


def test_authorizer_allows_every_route_the_caller_may_use(authorizer, stack):
    answer = authorizer.answer("apigw-authorizer-bearer.json", token(stack, 'groups=["admins"]'))
    [statement] = answer["policyDocument"]["Statement"]
    prefix = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod"
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == [f"{prefix}/GET/api/*", f"{prefix}/*/admin/*"]
    assert answer["principalId"] == "alice"
    assert answer["context"] == {
        "provider": "corp", "subject": "alice", "issuer": stack["issuer"], "groups": '["admins"]',
    }


def test_authorizer_leaves_out_routes_whose_rule_does_not_hold(authorizer, stack):
    answer = authorizer.answer("apigw-authorizer-bearer.json", token(stack, 'groups=["staff"]'))
    [statement] = answer["policyDocument"]["Statement"]
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abcdef1234/prod/GET/api/*"]


@pytest.mark.parametrize("fixture", ["apigw-authorizer-no-token.json", "apigw-authorizer-malformed-token.json"])
def test_authorizer_answers_unauthorized_without_a_valid_token(authorizer, fixture):
    ok, output = authorizer.invoke(fixture)
    assert not ok
    assert "Unauthorized" in output, output
