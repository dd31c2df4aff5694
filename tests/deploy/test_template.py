"""Checks on template.yaml: the SAM transform's output (routes, auth, the role's scope) and the
broker configuration the template renders for several parameter sets, parsed by the real
credbroker (`credbroker serve`) and read back through GET /auth/config.

The template uses AWS::LanguageExtensions (Fn::ForEach, Fn::ToJsonString): SAM CLI's own
implementation of that transform (samcli.lib.cfn_language_extensions) expands it here, as
`sam build` and `sam validate` do, before the SAM transform or the evaluator below see it.

Run by tests/deploy/run (pytest, aws-sam-translator). CREDBROKER_BIN names the credbroker binary.
"""

import atexit
import copy
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from samcli.lib.cfn_language_extensions.api import process_template
from samcli.lib.cfn_language_extensions.models import TemplateProcessingContext
from samcli.lib.cfn_language_extensions.pipeline import ProcessingPipeline
from samcli.lib.cfn_language_extensions.processors import ForEachProcessor, TemplateParsingProcessor
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
SOURCE = yaml_parse((ROOT / "template.yaml").read_text())


def loops_expanded(template):
    """The template with its Fn::ForEach loops expanded (and nothing else resolved), so the
    evaluator below sees every resource and condition under its final logical id."""
    context = TemplateProcessingContext(fragment=copy.deepcopy(template))
    return ProcessingPipeline([TemplateParsingProcessor(), ForEachProcessor()]).process_template(context)


TEMPLATE = loops_expanded(SOURCE)
CREDBROKER = os.environ.get("CREDBROKER_BIN", str(ROOT / "target/debug/credbroker"))

TENANT_A = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TENANT_B = "00000000-0000-4000-8000-0000000000b2"
TENANT_C = "00000000-0000-4000-8000-0000000000c3"
POOL_ID = "us-east-1:00000000-0000-4000-8000-000000000001"
CLOUDFRONT = "d111111abcdef8.cloudfront.net"


class PolicyNames:
    """The translator resolves managed policy names through IAM; these are the only ones the
    template uses, with their well-known ARNs (no AWS account is reachable from tests)."""

    def load(self):
        return {
            "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        }


def translated():
    """The template as CloudFormation would receive it after `sam package` (which replaces the
    local CodeUri with the uploaded artifact), its Fn::ForEach loops expanded (the first half of
    AWS::LanguageExtensions; Fn::ToJsonString stays for CloudFormation) and the SAM transform."""
    template = copy.deepcopy(TEMPLATE)
    assert template.pop("Transform") == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in resource["Properties"]:
            resource["Properties"]["CodeUri"] = "s3://artifacts/credbroker.zip"
    return transform(template, {}, PolicyNames())


def defaults():
    return {name: spec.get("Default", "") for name, spec in SOURCE["Parameters"].items()}


def when_true(node):
    """The value of `Fn::If` when its condition holds (the transform wraps what belongs to a
    conditional resource in its condition)."""
    return node["Fn::If"][1] if isinstance(node, dict) and "Fn::If" in node else node


# ---- The transformed template ------------------------------------------------------------------


def rest_api_paths(output, logical_id):
    return output["Resources"][logical_id]["Properties"]["Body"]["paths"]


def test_auth_and_web_routes_are_open_and_every_other_route_needs_iam():
    paths = rest_api_paths(translated(), "Api")
    assert {"/auth/config", "/auth/signin/{provider}", "/auth/identity-keys", "/api/whoami", "/web",
            "/web/{proxy+}"} <= set(paths)
    for path, methods in paths.items():
        for method, operation in methods.items():
            # The optional app's methods exist under a condition (AppUpstreamUrl).
            security = when_true(operation).get("security", [])
            schemes = {name for requirement in security for name in requirement}
            if method == "options":
                assert schemes == set(), f"OPTIONS {path} must stay open for preflights: {security}"
            elif path.startswith(("/auth/", "/web")):
                assert "AWS_IAM" not in schemes, f"{method.upper()} {path} must be open: {security}"
            else:
                assert schemes == {"AWS_IAM"}, f"{method.upper()} {path} must be AWS_IAM: {security}"


def broker_routes():
    """(METHOD, path) of every route `routes()` in src/api.rs serves (the sign-in function's
    /auth/* routes), from its `.route("PATH", METHOD(handler))` lines."""
    source = (ROOT / "src/api.rs").read_text()
    body = source[source.index("pub fn routes(") :]
    body = body[: body.index("\n}\n")]
    found = set()
    for line in body.splitlines():
        line = line.strip()
        if line.startswith('.route("'):
            path = line.split('"')[1]
            method = line.split('", ', 1)[1].split("(", 1)[0]
            found.add((method.upper(), path))
    assert found, "no .route( lines found in src/api.rs routes()"
    return found


def test_every_route_the_broker_serves_is_an_open_event_of_the_sign_in_function():
    events = TEMPLATE["Resources"]["SignInFunction"]["Properties"]["Events"].values()
    open_events = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events
                   if e["Properties"].get("Auth") == {"Authorizer": "NONE"}}
    assert ("GET", "/auth/identity-keys") in broker_routes()
    missing = broker_routes() - open_events
    assert not missing, f"src/api.rs serves these, the template routes none of them to the function: {missing}"


def test_preflights_are_answered_by_the_gateway_on_every_path():
    paths = rest_api_paths(translated(), "Api")
    for path, methods in paths.items():
        assert "options" in methods, f"{path} has no preflight"


def test_gateway_errors_carry_cors_headers():
    responses = translated()["Resources"]["Api"]["Properties"]["Body"][
        "x-amazon-apigateway-gateway-responses"
    ]
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        headers = responses[kind]["responseParameters"]
        assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == "'*'"


def test_the_role_may_invoke_only_this_apis_protected_routes():
    role = translated()["Resources"]["AuthenticatedRole"]["Properties"]
    [allow, admin] = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert (allow["Effect"], allow["Action"]) == ("Allow", "execute-api:Invoke")
    resource = allow["Resource"]["Fn::Sub"]
    assert resource.endswith(":${Api}/${StageName}/*/api/*"), resource
    # The per-route rule: /api/admin/* is denied unless the session's groups tag holds AdminGroup.
    assert (admin["Effect"], admin["Action"]) == ("Deny", "execute-api:Invoke")
    assert admin["Resource"]["Fn::Sub"].endswith(":${Api}/${StageName}/*/api/admin/*")
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Action"] == ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"]
    assert trust["Principal"] == {"Federated": "cognito-identity.amazonaws.com"}
    assert trust["Condition"]["ForAnyValue:StringLike"] == {"cognito-identity.amazonaws.com:amr": "authenticated"}
    assert "cognito-identity.amazonaws.com:aud" in trust["Condition"]["StringEquals"]


IDENTITY_KEY = "<['IdentityKey', 'Arn']>"
NEXT_KEY = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-00000000000a"
PREVIOUS_KEY = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-00000000000b"


def kms_statements(evaluator, role):
    """The role's statements that name a kms: action, as `evaluator`'s parameters render them."""
    statements = []
    for policy in evaluator.value(role.get("Policies", [])):
        statements += [s for s in policy["PolicyDocument"]["Statement"] if str(s["Action"]).startswith("kms:")]
    return statements


def test_in_enhanced_mode_the_sign_in_function_may_only_sign_with_the_identity_key():
    output = translated()
    role = output["Resources"]["SignInFunctionRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]
    enhanced = Evaluator({"PoolMode": "enhanced"})
    [policy] = enhanced.value(role["Policies"])
    sign, read = policy["PolicyDocument"]["Statement"]
    assert (sign["Effect"], sign["Action"], sign["Resource"]) == ("Allow", "kms:Sign", IDENTITY_KEY)
    assert (read["Effect"], read["Action"], read["Resource"]) == ("Allow", "kms:GetPublicKey", [IDENTITY_KEY])


def test_the_identity_key_is_a_retained_p256_signing_key_administered_through_iam():
    key = TEMPLATE["Resources"]["IdentityKey"]
    assert (key["Condition"], key["DeletionPolicy"], key["UpdateReplacePolicy"]) == (
        "CreateIdentityKey", "Retain", "Retain")
    properties = key["Properties"]
    assert (properties["KeySpec"], properties["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    [statement] = properties["KeyPolicy"]["Statement"]
    assert statement["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    config = json.loads(Evaluator({}).config())
    assert config["identity"] == {"kms_key_id": IDENTITY_KEY, "published_kms_key_ids": []}


def test_a_rotation_signs_with_the_next_key_and_keeps_publishing_the_previous_one():
    role = translated()["Resources"]["SignInFunctionRole"]["Properties"]
    # Step 1: the next key is published (and readable) before anything signs with it.
    before = Evaluator({"IdentityPublishedKeyArns": NEXT_KEY})
    sign, read = kms_statements(before, role)
    # (The evaluator's placeholder for the key's ARN holds a comma of its own: compare joined.)
    assert (sign["Resource"], ",".join(read["Resource"])) == (IDENTITY_KEY, f"{IDENTITY_KEY},{NEXT_KEY}")
    assert json.loads(before.config())["identity"]["published_kms_key_ids"] == [NEXT_KEY]
    # Step 2: it signs; the stack's own key is gone from the stack (retained) but still published.
    after = Evaluator({"IdentityKeyArn": NEXT_KEY, "IdentityPublishedKeyArns": PREVIOUS_KEY})
    assert not after.exists("IdentityKey")
    sign, read = kms_statements(after, role)
    assert (sign["Resource"], read["Resource"]) == (NEXT_KEY, [NEXT_KEY, PREVIOUS_KEY])
    identity = json.loads(after.config())["identity"]
    assert identity == {"kms_key_id": NEXT_KEY, "published_kms_key_ids": [PREVIOUS_KEY]}
    # A custom domain pins the issuer.
    pinned = Evaluator({"IdentityIssuer": "https://api.example.com/auth"})
    assert json.loads(pinned.config())["identity"]["issuer"] == "https://api.example.com/auth"
    outputs = SOURCE["Outputs"]
    assert Evaluator({}).value(outputs["IdentityIssuer"]["Value"]) == "https://<Api>.execute-api.<AWS::Region>.<AWS::URLSuffix>/prod/auth"
    assert pinned.value(outputs["IdentityIssuer"]["Value"]) == "https://api.example.com/auth"


def test_in_developer_mode_the_sign_in_function_may_vouch_for_users_of_this_pool_only():
    role = translated()["Resources"]["SignInFunctionRole"]["Properties"]
    for parameters, pool in (({}, POOL_ID), (PARAMETER_SETS["entra one tenant, existing pool"][0], None)):
        developer = Evaluator({"PoolMode": "developer", **parameters})
        [cognito, _kms] = developer.value(role["Policies"])
        [statement] = cognito["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == "cognito-identity:GetOpenIdTokenForDeveloperIdentity"
        pool = pool or parameters["ExistingIdentityPoolId"]
        assert statement["Resource"].endswith(f":identitypool/{pool}"), statement["Resource"]


def test_an_http_app_goes_behind_iam_with_the_identity_id_api_gateway_verified():
    paths = rest_api_paths(translated(), "Api")
    with_app = Evaluator({"AppUpstreamUrl": "https://app.internal.example.com"})
    without_app = Evaluator({})
    for path, target in (("/api/app", "https://app.internal.example.com/"),
                         ("/api/app/{proxy+}", "https://app.internal.example.com/{proxy}")):
        method = paths[path]["x-amazon-apigateway-any-method"]
        assert without_app.value(method) is None, f"{path} has a method without AppUpstreamUrl"
        operation = with_app.value(method)
        assert operation["security"] == [{"AWS_IAM": []}]
        integration = operation["x-amazon-apigateway-integration"]
        assert (integration["type"], integration["httpMethod"], integration["uri"]) == ("http_proxy", "ANY", target)
        mapped = integration["requestParameters"]
        assert mapped["integration.request.header.X-Credbroker-Identity-Id"] == "context.identity.cognitoIdentityId"
        if "{proxy}" in target:
            assert mapped["integration.request.path.proxy"] == "method.request.path.proxy"


def test_the_lambda_functions_run_as_the_emulator_checks_them():
    for logical_id in ("SignInFunction", "BearerAuthorizerFunction"):
        function = TEMPLATE["Resources"][logical_id]
        properties = function["Properties"]
        assert (properties["Runtime"], properties["Handler"], properties["Architectures"]) == (
            "provided.al2023", "bootstrap", ["arm64"])
        assert function["Metadata"]["BuildMethod"] == "rust-cargolambda"
        assert properties["Environment"]["Variables"]["CREDBROKER_CONFIG"] == {"Fn::GetAtt": ["BrokerConfig", "Value"]}
    # test_emulator.py runs the sign-in binary with this, as API Gateway events carry the stage.
    variables = TEMPLATE["Resources"]["SignInFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH"] == "true"


def test_the_bearer_api_uses_the_request_authorizer_with_a_header_identity():
    output = translated()
    body = output["Resources"]["BearerApi"]["Properties"]["Body"]
    authorizer = body["securityDefinitions"]["BearerAuthorizer"]
    assert authorizer["x-amazon-apigateway-authtype"] == "custom"
    assert authorizer["x-amazon-apigateway-authorizer"]["type"] == "request"
    assert authorizer["x-amazon-apigateway-authorizer"]["identitySource"] == "method.request.header.Authorization"
    route = when_true(when_true(body["paths"]["/api/whoami"])["get"])
    assert route["security"] == [{"BearerAuthorizer": []}]
    assert output["Resources"]["BearerApi"]["Condition"] == "HasBearer"


# ---- Conditions and rendered configuration -------------------------------------------------------


class Evaluator:
    """Evaluates the intrinsic functions the template uses, for one set of parameters, with
    placeholder values for resources (pool id, CloudFront domain)."""

    def __init__(self, parameters):
        self.parameters = defaults()
        self.parameters.update(parameters)
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(TEMPLATE["Conditions"][name]))
        return self.conditions[name]

    def exists(self, logical_id):
        condition = TEMPLATE["Resources"][logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def ref(self, name):
        if name in self.parameters:
            return self.parameters[name]
        return {"IdentityPool": POOL_ID, "AWS::NoValue": None}.get(name, f"<{name}>")

    def value(self, node, names=None):
        if isinstance(node, list):
            return [v for v in (self.value(item, names) for item in node) if v is not None]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(key, arg)] = node.items()
            handler = {
                "Ref": lambda a: self.ref(a),
                "Condition": lambda a: self.condition(a),
                "Fn::Equals": lambda a: self.value(a[0]) == self.value(a[1]),
                "Fn::Not": lambda a: not self.value(a[0]),
                "Fn::And": lambda a: all(self.value(x) for x in a),
                "Fn::Or": lambda a: any(self.value(x) for x in a),
                "Fn::ToJsonString": lambda a: json.dumps(self.value(a), separators=(",", ":")),
                "Fn::If": lambda a: self.value(a[1] if self.condition(a[0]) else a[2]),
                "Fn::Join": lambda a: a[0].join(self.value(a[1])),
                "Fn::Split": lambda a: self.value(a[1]).split(a[0]),
                "Fn::Select": lambda a: self.value(a[1])[int(a[0])],
                "Fn::GetAtt": lambda a: CLOUDFRONT if a == ["WebDistribution", "DomainName"] else f"<{a}>",
                "Fn::Sub": self.sub,
            }.get(key)
            if handler:
                return handler(arg)
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not None}

    def sub(self, arg):
        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        values = {name: self.value(value) for name, value in names.items()}
        out, rest = "", text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            if name in values:
                found = values[name]
            elif "." in name:
                found = self.value({"Fn::GetAtt": name.split(".", 1)})
            else:
                found = self.ref(name)
            out += before + str(found)
        return out + rest

    def config(self):
        """The configuration text the template renders (JSON)."""
        return self.value(TEMPLATE["Resources"]["BrokerConfig"]["Properties"]["Value"])


PARAMETER_SETS = {
    "nothing": ({}, []),
    "google": ({"GoogleClientId": "123-abc.apps.googleusercontent.com"}, ["google"]),
    "everything": (
        {
            "GoogleClientId": "123-abc.apps.googleusercontent.com",
            "SalesforceClientId": "3MVG9abc",
            "SalesforceIssuer": "https://acme.my.salesforce.com",
            "EntraClientId": "11111111-2222-4333-8444-555555555555",
            "EntraTenantId1": TENANT_A,
            "EntraTenantId2": TENANT_B,
            "EntraTenantId3": TENANT_C,
            "CognitoUserPoolId": "eu-west-1_AbCdEf123",
            "CognitoUserPoolClientId": "5abc123",
            "RequireClaim": "groups",
            "RequireValue": "admins",
            "RequireMatchType": "Contains",
            "AppOrigins": "https://app.example.com,http://localhost:3000",
            "EnableCloudFrontWeb": "true",
            "EnableBearerAuthorizer": "true",
        },
        ["cognito", "entra", "google", "salesforce"],
    ),
    "cognito group rule (claim name with a colon)": (
        {
            "CognitoUserPoolId": "eu-west-1_AbCdEf123",
            "CognitoUserPoolClientId": "5abc123",
            "RequireClaim": "cognito:groups",
            "RequireValue": "admins",
            "RequireMatchType": "Contains",
        },
        ["cognito"],
    ),
    "entra one tenant, existing pool": (
        {
            "EntraClientId": "11111111-2222-4333-8444-555555555555",
            "EntraTenantId1": TENANT_A,
            "ExistingIdentityPoolId": "eu-west-1:00000000-0000-4000-8000-0000000000ee",
        },
        ["entra"],
    ),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoKms:
    """A moto server (KMS) with P-256 signing keys, for `credbroker serve` to read the rendered
    [identity] keys from, as the sign-in function reads them from KMS at start. Started once."""

    server = None
    endpoint = None
    keys = []

    @classmethod
    def key(cls, index):
        if cls.server is None:
            port = free_port()
            cls.server = subprocess.Popen(["moto_server", "-p", str(port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            atexit.register(cls.server.terminate)
            cls.endpoint = f"http://127.0.0.1:{port}"
        while len(cls.keys) <= index:
            cls.keys.append(cls.create_key())
        return cls.keys[index]

    @classmethod
    def create_key(cls):
        # Moto picks the service from the Authorization header's scope; it checks no signature.
        request = urllib.request.Request(cls.endpoint + "/", method="POST", data=json.dumps(
            {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}).encode(), headers={
            "content-type": "application/x-amz-json-1.1",
            "x-amz-target": "TrentService.CreateKey",
            "authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kms/aws4_request, "
                             "SignedHeaders=host, Signature=00",
        })
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return json.load(answer)["KeyMetadata"]["Arn"]
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def with_moto_keys(config_text):
    """The configuration with its [identity] keys (resource placeholders, parameter ARNs)
    replaced by moto's, and moto as the KMS endpoint."""
    config = json.loads(config_text)
    identity = config.get("identity")
    if identity is None:
        return config_text
    identity["kms_key_id"] = MotoKms.key(0)
    identity["published_kms_key_ids"] = [MotoKms.key(i + 1) for i in range(len(identity.get("published_kms_key_ids") or []))]
    identity["endpoint"] = MotoKms.endpoint
    return json.dumps(config)


def served_config(config_text):
    """Starts `credbroker serve` on the rendered configuration and returns its GET /auth/config
    answer; fails with credbroker's own message when the configuration is refused. The identity
    keys are moto's (credbroker reads their public halves at start)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        file.write(with_moto_keys(config_text))
    port = free_port()
    moto_credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    server = subprocess.Popen(
        [CREDBROKER, "serve", "--config", file.name, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **moto_credentials},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if server.poll() is not None:
                pytest.fail(f"credbroker refused the rendered config:\n{server.stderr.read()}\n{config_text}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/auth/config", timeout=5) as answer:
                    return json.load(answer)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=10)
        os.unlink(file.name)


@pytest.mark.parametrize("name", PARAMETER_SETS)
def test_the_rendered_config_is_accepted_and_lists_the_providers_the_parameters_name(name):
    parameters, providers = PARAMETER_SETS[name]
    evaluator = Evaluator(parameters)
    config = served_config(evaluator.config())
    assert sorted(p["name"] for p in config["providers"]) == providers
    pool = parameters.get("ExistingIdentityPoolId") or POOL_ID
    assert config["region"] == pool.split(":")[0]


@pytest.mark.parametrize("name", PARAMETER_SETS)
def test_the_config_as_sam_clis_language_extensions_render_it_is_accepted_too(name):
    """SAM CLI's implementation of Fn::ToJsonString renders AWS::NoValue as null; credbroker
    reads a JSON null as an absent value. It leaves what only CloudFormation knows (the pool's
    id, the distribution's domain) as written; those are filled in here."""
    parameters, providers = PARAMETER_SETS[name]
    rendered = process_template(SOURCE, parameters)["Resources"]["BrokerConfig"]["Properties"]["Value"]
    assert "null" in rendered or name == "everything", rendered
    rendered = rendered.replace('{"Ref":"IdentityPool"}', json.dumps(POOL_ID))
    rendered = rendered.replace("${WebDistribution.DomainName}", CLOUDFRONT)
    config = served_config(rendered)
    assert sorted(p["name"] for p in config["providers"]) == providers


def test_everything_renders_every_rule_tenant_and_origin():
    evaluator = Evaluator(PARAMETER_SETS["everything"][0])
    config = json.loads(evaluator.config())
    providers = config["providers"]
    assert [p["require"] for p in providers.values()] == [["groups:admins"]] * 4, config
    assert providers["entra"]["tenants"] == [TENANT_A, TENANT_B, TENANT_C]
    assert providers["salesforce"]["issuers"] == ["https://acme.my.salesforce.com"]
    assert providers["cognito"]["user_pool_id"] == "eu-west-1_AbCdEf123"
    assert config["allowed_origins"] == [
        f"https://{CLOUDFRONT}", "https://app.example.com", "http://localhost:3000"]
    assert config["authorizer"]["allow"] == [{"routes": ["GET /api/*"]}]
    assert config["identity_pool"] == {"id": POOL_ID, "mode": "enhanced"}


def test_without_extra_origins_only_the_api_origin_is_allowed():
    """The API's own origin is same-origin for the broker and never listed; CloudFront's only
    when it hosts the client."""
    assert json.loads(Evaluator({}).config())["allowed_origins"] == []
    assert json.loads(Evaluator({"EnableCloudFrontWeb": "true"}).config())["allowed_origins"] == [
        f"https://{CLOUDFRONT}"]
    only_apps = Evaluator({"AppOrigins": "https://app.example.com"})
    assert json.loads(only_apps.config())["allowed_origins"] == ["https://app.example.com"]


def test_without_a_rule_or_the_authorizer_the_config_has_neither():
    config = json.loads(Evaluator(PARAMETER_SETS["google"][0]).config())
    assert config["providers"] == {
        "google": {"kind": "google", "audiences": ["123-abc.apps.googleusercontent.com"], "require": []}}
    assert "authorizer" not in config


def test_providers_and_role_mappings_follow_the_parameters():
    everything = Evaluator(PARAMETER_SETS["everything"][0])
    for resource in ("SalesforceOidcProvider", "EntraOidcProvider1", "EntraOidcProvider2", "EntraOidcProvider3",
                     "IdentityPool", "IdentityPoolRoles", "BearerAuthorizerFunction", "BearerApi"):
        assert everything.exists(resource), resource
    pool = everything.value(TEMPLATE["Resources"]["IdentityPool"]["Properties"])
    assert pool["AllowUnauthenticatedIdentities"] is False
    assert pool["SupportedLoginProviders"] == {"accounts.google.com": "123-abc.apps.googleusercontent.com"}
    assert len(pool["OpenIdConnectProviderARNs"]) == 4
    assert pool["CognitoIdentityProviders"][0]["ProviderName"] == "cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"
    mappings = everything.value(TEMPLATE["Resources"]["IdentityPoolRoles"]["Properties"])["RoleMappings"]
    assert {m["IdentityProvider"] for m in mappings.values()} == {
        "accounts.google.com",
        "acme.my.salesforce.com",
        f"login.microsoftonline.com/{TENANT_A}/v2.0",
        f"login.microsoftonline.com/{TENANT_B}/v2.0",
        f"login.microsoftonline.com/{TENANT_C}/v2.0",
        "cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123:5abc123",
    }
    for mapping in mappings.values():
        assert mapping["AmbiguousRoleResolution"] == "Deny"
        [rule] = mapping["RulesConfiguration"]["Rules"]
        assert (rule["Claim"], rule["MatchType"], rule["Value"]) == ("groups", "Contains", "admins")

    google_only = Evaluator(PARAMETER_SETS["google"][0])
    for resource in ("SalesforceOidcProvider", "EntraOidcProvider1", "BearerAuthorizerFunction"):
        assert not google_only.exists(resource), resource
    roles = google_only.value(TEMPLATE["Resources"]["IdentityPoolRoles"]["Properties"])
    assert "RoleMappings" not in roles, "no claim restriction, no rules"
    pool = google_only.value(TEMPLATE["Resources"]["IdentityPool"]["Properties"])
    assert pool["OpenIdConnectProviderARNs"] == [] and "CognitoIdentityProviders" not in pool

    shared = Evaluator(PARAMETER_SETS["entra one tenant, existing pool"][0])
    assert not shared.exists("IdentityPool") and not shared.exists("IdentityPoolRoles")
    assert shared.exists("EntraOidcProvider1") and not shared.exists("EntraOidcProvider2")


# ---- The browser client and static hosting ------------------------------------------------------


def test_the_sign_in_function_serves_the_client_under_web_and_nothing_else_does():
    events = TEMPLATE["Resources"]["SignInFunction"]["Properties"]["Events"]
    web = {(e["Properties"]["Path"], e["Properties"]["Method"]) for e in events.values()}
    assert {("/web", "GET"), ("/web/{proxy+}", "GET")} <= web
    for logical_id, resource in TEMPLATE["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function" or logical_id == "SignInFunction":
            continue
        paths = {e["Properties"].get("Path", "") for e in resource["Properties"].get("Events", {}).values()}
        assert not any(p.startswith("/web") for p in paths), f"{logical_id} serves {paths}"
    # The Python runtime remains only for the two sample routes.
    inline = {i for i, r in TEMPLATE["Resources"].items() if "InlineCode" in r.get("Properties", {})}
    assert inline == {"WhoamiFunction", "BearerWhoamiFunction"}


def test_cloudfront_hosting_is_optional():
    hosting = ("WebBucket", "WebOriginAccessControl", "WebDistribution", "WebBucketPolicy")
    default = Evaluator({})
    assert not any(default.exists(r) for r in hosting)
    with_cloudfront = Evaluator({"EnableCloudFrontWeb": "true"})
    assert all(with_cloudfront.exists(r) for r in hosting)
    outputs = TEMPLATE["Outputs"]
    assert outputs["CloudFrontWebUrl"]["Condition"] == "HasCloudFrontWeb"
    assert outputs["WebBucketName"]["Condition"] == "HasCloudFrontWeb"
    assert "Condition" not in outputs["WebUrl"]
    assert translated()["Resources"]["WebDistribution"]["Condition"] == "HasCloudFrontWeb"


def readme_table_names(heading):
    """The `names` in the first column of the first table after `heading` in README.md's deploy
    section (a row may name several, comma-separated)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Deploying to AWS (sam deploy)") :]
    lines = section[section.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    names = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first = line.split("|")[1]
        names |= {part.strip().strip("`") for part in first.split(",")}
    assert names, f"no table after {heading!r}"
    return names


def test_the_readme_lists_exactly_the_templates_resources_parameters_and_outputs():
    assert readme_table_names("What it creates") == set(TEMPLATE["Resources"])
    assert readme_table_names("### Parameters") == set(SOURCE["Parameters"])
    assert readme_table_names("### Outputs") == set(TEMPLATE["Outputs"])


def test_no_two_outputs_say_the_same_thing():
    values = [json.dumps(output["Value"], sort_keys=True) for output in TEMPLATE["Outputs"].values()]
    assert len(values) == len(set(values)), TEMPLATE["Outputs"]


# ---- Unsigned navigations ----------------------------------------------------------------------


def test_unsigned_navigations_get_the_local_gateways_signin_page_and_api_clients_json():
    responses = translated()["Resources"]["Api"]["Properties"]["Body"][
        "x-amazon-apigateway-gateway-responses"
    ]
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["statusCode"] == "403"
    headers = missing["responseParameters"]
    assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == "'*'"
    assert headers["gatewayresponse.header.Cache-Control"] == "'no-store'"
    assert headers["gatewayresponse.header.Vary"] == "'Accept'"
    templates = missing["responseTemplates"]
    # API clients: API Gateway's own body, unchanged.
    assert templates["application/json"] == '{"message":$context.error.messageString}'
    # Navigations: exactly the page the local gateway serves, with the client under /web/
    # (served by the sign-in function on this API's origin) and the stage substituted by API
    # Gateway; its only `$` is that variable (templates are substitution, not VTL).
    page = (ROOT / "src/local/gateway/signin-redirect.html").read_text()
    assert templates["text/html"] == page.replace("__CREDBROKER_WEB__", "web/")
    assert templates["text/html"].count("$") == 1 and "$context.stage" in templates["text/html"]
    paths = rest_api_paths(translated(), "Api")
    assert {"/web", "/web/{proxy+}"} <= set(paths)


# ---- Pool modes --------------------------------------------------------------------------------


DEVELOPER = {**PARAMETER_SETS["everything"][0], "PoolMode": "developer"}


def test_a_developer_pool_has_only_a_developer_provider_and_no_role_mapping():
    developer = Evaluator(DEVELOPER)
    pool = developer.value(TEMPLATE["Resources"]["IdentityPool"]["Properties"])
    assert pool["DeveloperProviderName"] == "login.credbroker"
    for key in ("SupportedLoginProviders", "OpenIdConnectProviderARNs", "CognitoIdentityProviders"):
        assert key not in pool, f"{key} in a developer pool: {pool}"
    for resource in ("SalesforceOidcProvider", "EntraOidcProvider1", "EntraOidcProvider2", "EntraOidcProvider3",
                     "GooglePrincipalTags", "CognitoPrincipalTags", "SalesforcePrincipalTags", "EntraPrincipalTags1",
                     "EntraPrincipalTags2", "EntraPrincipalTags3"):
        assert not developer.exists(resource), resource
    roles = developer.value(TEMPLATE["Resources"]["IdentityPoolRoles"]["Properties"])
    assert "RoleMappings" not in roles, "the broker's rules are authoritative in developer mode"
    enhanced = Evaluator(PARAMETER_SETS["everything"][0])
    assert "DeveloperProviderName" not in enhanced.value(TEMPLATE["Resources"]["IdentityPool"]["Properties"])


def test_the_developer_config_names_the_provider_and_tags_every_provider():
    config = json.loads(Evaluator(DEVELOPER).config())
    assert config["identity_pool"] == {"id": POOL_ID, "mode": "developer",
                                       "developer_provider_name": "login.credbroker"}
    for name, provider in config["providers"].items():
        assert provider["principal_tags"] == {"groups": "groups"}, name
    enhanced = json.loads(Evaluator(PARAMETER_SETS["everything"][0]).config())
    assert all("principal_tags" not in provider for provider in enhanced["providers"].values())


def test_the_developer_config_is_accepted_by_credbroker():
    config = served_config(Evaluator(DEVELOPER).config())
    assert sorted(p["name"] for p in config["providers"]) == ["cognito", "entra", "google", "salesforce"]


def test_enhanced_pools_map_the_groups_claim_to_a_principal_tag_per_provider():
    enhanced = Evaluator({**PARAMETER_SETS["everything"][0], "GroupsClaim": "cognito:groups"})
    for resource in ("GooglePrincipalTags", "CognitoPrincipalTags", "SalesforcePrincipalTags", "EntraPrincipalTags1",
                     "EntraPrincipalTags2", "EntraPrincipalTags3"):
        assert enhanced.exists(resource), resource
        properties = enhanced.value(TEMPLATE["Resources"][resource]["Properties"])
        assert properties["PrincipalTags"] == {"groups": "cognito:groups"}
        assert properties["UseDefaults"] is False


def principal_tag_maps(evaluator):
    """{provider name: PrincipalTags} of the principal tag maps that exist for `evaluator`."""
    maps = {}
    for logical_id, resource in TEMPLATE["Resources"].items():
        if resource["Type"] == "AWS::Cognito::IdentityPoolPrincipalTag" and evaluator.exists(logical_id):
            properties = evaluator.value(resource["Properties"])
            assert properties["UseDefaults"] is False, logical_id
            maps[properties["IdentityProviderName"]] = properties["PrincipalTags"]
    return maps


@pytest.mark.parametrize("tenants", [1, 2, 3])
def test_every_login_provider_of_an_enhanced_pool_maps_the_groups_tag(tenants):
    """/api/admin/* needs the "groups" principal tag: a provider of the pool without a tag map
    (as Entra tenants 2 and 3 once were) would be denied there whatever its groups."""
    parameters = {**PARAMETER_SETS["everything"][0], "GroupsClaim": "roles"}
    for index in range(tenants + 1, 4):
        parameters[f"EntraTenantId{index}"] = ""
    enhanced = Evaluator(parameters)
    pool = enhanced.value(TEMPLATE["Resources"]["IdentityPool"]["Properties"])
    providers = {*pool["SupportedLoginProviders"], *pool["OpenIdConnectProviderARNs"],
                 *(p["ProviderName"] for p in pool["CognitoIdentityProviders"])}
    assert len(pool["OpenIdConnectProviderARNs"]) == 1 + tenants  # Salesforce and each tenant
    maps = principal_tag_maps(enhanced)
    assert set(maps) == providers
    assert all(tags == {"groups": "roles"} for tags in maps.values()), maps
    # A shared pool is left alone, and a developer pool's tags come from the broker.
    assert principal_tag_maps(Evaluator({**parameters, "ExistingIdentityPoolId": POOL_ID})) == {}
    assert principal_tag_maps(Evaluator({**parameters, "PoolMode": "developer"})) == {}


def test_the_admin_rule_matches_a_group_member_in_either_mode():
    statement = TEMPLATE["Resources"]["AuthenticatedRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][1]
    condition = lambda parameters: Evaluator(parameters).value(statement["Condition"])
    assert condition({"PoolMode": "developer"}) == {"StringNotLike": {"aws:PrincipalTag/groups": "*:admins:*"}}
    assert condition({"PoolMode": "enhanced", "AdminGroup": "ops"}) == {
        "StringNotLike": {"aws:PrincipalTag/groups": "ops"}}


# ---- Security headers of the CloudFront-hosted client --------------------------------------------


def rust_str_const(source, name):
    """The value of `const NAME: &str = "...";` in Rust source, `\\` line continuations joined
    as rustc joins them (the newline and the next line's leading whitespace dropped)."""
    start = source.index(f"const {name}: &str = \"") + len(f"const {name}: &str = \"")
    literal = source[start : source.index('";', start)]
    lines = literal.split("\\\n")
    return lines[0] + "".join(line.lstrip() for line in lines[1:])


def assets_header(source, name):
    """The value `security_headers()` in src/assets.rs sets for the header constant `name`."""
    body = source[source.index("pub fn security_headers") :]
    marker = f"{name},"
    after = body[body.index(marker) + len(marker) :]
    return after[after.index('"') + 1 : after.index('"', after.index('"') + 1)]


def test_the_cloudfront_client_gets_the_brokers_security_headers_and_hsts():
    assets = (ROOT / "src/assets.rs").read_text()
    csp = rust_str_const(assets, "CONTENT_SECURITY_POLICY")
    assert "frame-ancestors 'self'" in csp and "script-src 'self'" in csp
    distribution = TEMPLATE["Resources"]["WebDistribution"]["Properties"]["DistributionConfig"]
    behaviours = [distribution["DefaultCacheBehavior"], *distribution.get("CacheBehaviors", [])]
    for behaviour in behaviours:
        assert behaviour["ResponseHeadersPolicyId"] == {"Ref": "WebResponseHeadersPolicy"}
    policy = TEMPLATE["Resources"]["WebResponseHeadersPolicy"]
    assert policy["Type"] == "AWS::CloudFront::ResponseHeadersPolicy"
    assert policy["Condition"] == "HasCloudFrontWeb"
    config = policy["Properties"]["ResponseHeadersPolicyConfig"]
    security = config["SecurityHeadersConfig"]
    # Every header replaces whatever the origin (S3 object metadata) might send.
    assert all(header["Override"] is True for header in security.values())
    assert security["ContentSecurityPolicy"]["ContentSecurityPolicy"] == csp
    assert security["FrameOptions"]["FrameOption"] == assets_header(assets, "X_FRAME_OPTIONS")
    assert security["ReferrerPolicy"]["ReferrerPolicy"] == assets_header(assets, "REFERRER_POLICY")
    assert assets_header(assets, "X_CONTENT_TYPE_OPTIONS") == "nosniff"
    assert "ContentTypeOptions" in security  # CloudFront's only value: nosniff
    hsts = security["StrictTransportSecurity"]
    assert hsts["AccessControlMaxAgeSec"] >= 31536000 and hsts["IncludeSubdomains"] is True
    custom = {item["Header"]: item for item in config["CustomHeadersConfig"]["Items"]}
    permissions = custom["Permissions-Policy"]
    assert permissions["Value"] == assets_header(assets, 'HeaderName::from_static("permissions-policy")')
    assert permissions["Override"] is True
    assert Evaluator({"EnableCloudFrontWeb": "true"}).exists("WebResponseHeadersPolicy")
    assert not Evaluator({}).exists("WebResponseHeadersPolicy")


# ---- Monitoring: alarms and dashboard over the functions' EMF metrics -----------------------------

ALARMS = ("SignInErrorRateAlarm", "CognitoThrottlingAlarm", "ProviderKeysUnreachableAlarm")


def telemetry_metrics():
    """Every metric src/telemetry.rs defines, with the labels its table of metrics gives it."""
    source = (ROOT / "src/telemetry.rs").read_text()
    consts = {}
    for line in source.splitlines():
        if line.startswith("pub const ") and ": &str = \"" in line:
            name = line[len("pub const ") : line.index(":")]
            consts[name] = rust_str_const(source, name)
    labels = {}
    for line in source.splitlines():
        if line.startswith("//! | [`") and "` |" in line:
            cells = [cell.strip() for cell in line[len("//! |") :].split("|")]
            const = cells[0].strip("[]`")
            labels[consts[const]] = {label.strip(" `") for label in cells[2].split(",")}
    rollup = source[source.index("pub const ROLLUP_LABELS") :].split("[", 2)[2].split("]")[0]
    rollup_labels = {consts[name.strip()] for name in rollup.split(",")}
    return labels, rollup_labels


def emitted_dimension_sets(labels, rollup_labels):
    """The dimension sets src/telemetry/emf.rs publishes a metric under (`dimension_sets`): all
    its labels, its rollup labels alone, none."""
    return [set(labels), set(labels) & rollup_labels, set()]


def metric_namespace():
    """The namespace both functions' EMF lines use (CREDBROKER_METRICS_NAMESPACE, as named by
    src/telemetry/emf.rs)."""
    emf = (ROOT / "src/telemetry/emf.rs").read_text()
    variable = rust_str_const(emf, "NAMESPACE_ENV")
    resources = TEMPLATE["Resources"]
    namespaces = [
        resources[function]["Properties"]["Environment"]["Variables"][variable]
        for function in ("SignInFunction", "BearerAuthorizerFunction")
    ]
    assert namespaces[0] == namespaces[1], namespaces
    return Evaluator({}).value(namespaces[0])


def assert_emitted(namespace, name, dimensions):
    labels, rollup_labels = telemetry_metrics()
    assert namespace == metric_namespace(), (namespace, name)
    assert name in labels, f"{name} is no metric of src/telemetry.rs"
    assert set(dimensions) in emitted_dimension_sets(labels[name], rollup_labels), (name, dimensions)


def alarm_metrics(alarm):
    """(namespace, name, {dimension: value}, stat) of every metric an alarm reads."""
    properties = Evaluator({"Monitoring": "true", "EnableBearerAuthorizer": "true"}).value(
        TEMPLATE["Resources"][alarm]["Properties"]
    )
    if "MetricName" in properties:
        dims = {d["Name"]: d["Value"] for d in properties.get("Dimensions", [])}
        return [(properties["Namespace"], properties["MetricName"], dims, properties["Statistic"])]
    found = []
    for query in properties["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            found.append((metric["Namespace"], metric["MetricName"], dims, query["MetricStat"]["Stat"]))
    return found


def test_alarms_and_dashboard_exist_only_with_the_monitoring_parameter():
    monitored = (*ALARMS, "AuthorizerErrorRateAlarm", "Dashboard")
    assert not any(Evaluator({}).exists(r) for r in monitored)
    assert not any(Evaluator({"EnableBearerAuthorizer": "true"}).exists(r) for r in monitored)
    on = Evaluator({"Monitoring": "true"})
    assert all(on.exists(r) for r in (*ALARMS, "Dashboard"))
    # The authorizer's alarm only where there is an authorizer.
    assert not on.exists("AuthorizerErrorRateAlarm")
    assert Evaluator({"Monitoring": "true", "EnableBearerAuthorizer": "true"}).exists("AuthorizerErrorRateAlarm")
    assert TEMPLATE["Outputs"]["DashboardUrl"]["Condition"] == "HasMonitoring"
    resources = translated()["Resources"]
    assert resources["SignInErrorRateAlarm"]["Condition"] == "HasMonitoring"
    assert resources["AuthorizerErrorRateAlarm"]["Condition"] == "HasBearerMonitoring"


def test_every_alarm_reads_metrics_the_functions_emit_under_their_dimensions():
    for alarm in (*ALARMS, "AuthorizerErrorRateAlarm"):
        metrics = alarm_metrics(alarm)
        assert metrics, alarm
        for namespace, name, dims, stat in metrics:
            assert_emitted(namespace, name, dims)
            assert stat == "Sum", (alarm, name)  # counters: the count per period


def test_the_error_rate_alarms_divide_errors_by_all_answers():
    for alarm, metric, label in (
        ("SignInErrorRateAlarm", "credbroker_signins_total", "outcome"),
        ("AuthorizerErrorRateAlarm", "credbroker_authorizer_decisions_total", "decision"),
    ):
        queries = TEMPLATE["Resources"][alarm]["Properties"]["Metrics"]
        [expression] = [q for q in queries if "Expression" in q]
        assert expression["Expression"] == f"100 * FILL(errors, 0) / {queries[2]['Id']}"
        assert expression["ReturnData"] is True
        assert [q["ReturnData"] for q in queries if "MetricStat" in q] == [False, False]
        read = {(name, tuple(dims.items())) for _, name, dims, _ in alarm_metrics(alarm)}
        assert read == {(metric, ((label, "error"),)), (metric, ())}, read
    throttles = alarm_metrics("CognitoThrottlingAlarm")
    assert [(name, dims) for _, name, dims, _ in throttles] == [("credbroker_cognito_throttles_total", {})]
    keys = {name for _, name, _, _ in alarm_metrics("ProviderKeysUnreachableAlarm")}
    assert keys == {"credbroker_jwks_fetch_failures_total", "credbroker_jwks_stale_keys_served_total"}


def test_alarm_actions_follow_the_topic_parameter():
    topic = "arn:aws:sns:eu-west-1:123456789012:credbroker-alarms"
    for alarm in ALARMS:
        properties = TEMPLATE["Resources"][alarm]["Properties"]
        with_topic = Evaluator({"Monitoring": "true", "AlarmTopicArn": topic}).value(properties)
        assert with_topic["AlarmActions"] == [topic] and with_topic["OKActions"] == [topic], alarm
        without = Evaluator({"Monitoring": "true"}).value(properties)
        assert "AlarmActions" not in without and "OKActions" not in without, alarm
        assert properties["TreatMissingData"] == "notBreaching"


def test_the_dashboard_body_is_json_naming_only_emitted_metrics():
    evaluator = Evaluator({"Monitoring": "true", "EnableBearerAuthorizer": "true"})
    body = json.loads(evaluator.value(TEMPLATE["Resources"]["Dashboard"]["Properties"]["DashboardBody"]))
    named = set()
    for widget in body["widgets"]:
        assert widget["type"] == "metric"
        assert widget["properties"]["region"] == "<AWS::Region>"
        for row in widget["properties"]["metrics"]:
            options = row[-1] if isinstance(row[-1], dict) else {}
            fields = row[:-1] if options else row
            namespace, name, pairs = fields[0], fields[1], fields[2:]
            assert len(pairs) % 2 == 0, row
            assert_emitted(namespace, name, dict(zip(pairs[::2], pairs[1::2])))
            named.add(name)
    labels, _ = telemetry_metrics()
    assert named == set(labels), set(labels) - named
