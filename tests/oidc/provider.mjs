// An independent OpenID provider for the tests: panva's `oidc-provider` (OpenID Certified),
// pinned in package.json, run on 127.0.0.1 by `tests/oidc_provider.rs`.
//
// Nobody on this project wrote the code that issues these tokens, discovers them and serves their
// keys: the broker must verify them as they come. The harness only sets the provider up the way
// real deployments look and drives the authorization-code flow with PKCE over real HTTP:
//
// - the issuer is `http://127.0.0.1:PORT/`, with the trailing `/` Auth0 also writes, so `iss`,
//   the discovery `issuer` and the configured value must be compared exactly;
// - ID tokens are ES256 (`id_token_signed_response_alg`) and carry a namespaced claim
//   `https://example.com/roles` (how Auth0 wants custom claims written);
// - the login step is the provider's interaction: this harness's interaction endpoint logs in the
//   `login_hint` account and grants the requested scopes, in place of a person at a login page;
// - `POST /rotate` on the control port rotates the signing keys: a new ES256 key signs from then
//   on, the old one stays published, as a provider rolling its keys does.
//
// Prints one JSON line when ready: {"issuer": "...", "control": "http://127.0.0.1:PORT"}. The
// control port answers `POST /mint {"sub": "ann"}` with the tokens of a completed code flow.
// Accounts: `ann` (roles admin, staff) and `bob` (roles viewer).

import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const CLIENT_ID = 'credbroker-oidc-test';
const ROLES_CLAIM = 'https://example.com/roles';
const ACCOUNTS = {
  ann: { email: 'ann@example.com', roles: ['admin', 'staff'] },
  bob: { email: 'bob@example.com', roles: ['viewer'] },
};

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

let keyNumber = 0;
function ecKey() {
  keyNumber += 1;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: `es256-${keyNumber}`, alg: 'ES256', use: 'sig' };
}

function providerFor(issuer, redirectUri, keys) {
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        token_endpoint_auth_method: 'none',
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: { openid: ['sub'], email: ['email'], roles: [ROLES_CLAIM] },
    scopes: ['openid', 'email', 'roles'],
    // Scope claims in the ID token itself, as the broker reads only the ID token.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: account.email, [ROLES_CLAIM]: account.roles };
        },
      };
    },
  });
  // Logged, not thrown: the test reads answers, and a provider error shows up there.
  provider.on('server_error', (ctx, error) => console.error('oidc-provider:', error));
  return provider;
}

// The login and consent a person would give: the account named by `login_hint`, every
// requested scope.
async function finishInteraction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const accountId = details.params.login_hint;
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const issuerServer = createServer();
const issuerPort = await listen(issuerServer);
const issuer = `http://127.0.0.1:${issuerPort}/`;
const redirectUri = `http://127.0.0.1:${issuerPort}/callback`;
let keys = [ecKey()];
let provider = providerFor(issuer, redirectUri, keys);

issuerServer.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    finishInteraction(provider, req, res).catch((error) => {
      res.statusCode = 500;
      res.end(String(error));
    });
    return;
  }
  provider.callback()(req, res);
});

// A cookie jar of name=value pairs, as a browser keeps for the provider's origin.
function remember(jar, response) {
  for (const cookie of response.headers.getSetCookie()) {
    const [pair] = cookie.split(';');
    const [name, ...value] = pair.split('=');
    jar.set(name.trim(), value.join('='));
  }
}

async function follow(url, jar) {
  const cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
  const response = await fetch(url, { redirect: 'manual', headers: { cookie } });
  remember(jar, response);
  const location = response.headers.get('location');
  if (!location) {
    throw new Error(`${url} answered ${response.status}: ${await response.text()}`);
  }
  return new URL(location, url);
}

// The authorization-code flow with PKCE, over HTTP, for the account `sub`.
async function mint(sub) {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const authorize = new URL('auth', issuer);
  for (const [name, value] of Object.entries({
    client_id: CLIENT_ID,
    redirect_uri: redirectUri,
    response_type: 'code',
    scope: 'openid email roles',
    state: randomBytes(8).toString('hex'),
    nonce: randomBytes(8).toString('hex'),
    code_challenge: challenge,
    code_challenge_method: 'S256',
    login_hint: sub,
    prompt: 'login consent',
  })) {
    authorize.searchParams.set(name, value);
  }
  const jar = new Map();
  let location = await follow(authorize, jar);
  while (!location.href.startsWith(redirectUri)) {
    location = await follow(location, jar);
  }
  const code = location.searchParams.get('code');
  if (!code) throw new Error(`no code: ${location}`);
  const token = await fetch(new URL('token', issuer), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      client_id: CLIENT_ID,
      code_verifier: verifier,
    }),
  });
  const body = await token.json();
  if (!body.id_token) throw new Error(`token endpoint: ${JSON.stringify(body)}`);
  return body;
}

// The new key signs from now on; the old one stays published for tokens already out.
function rotate() {
  keys = [ecKey(), ...keys];
  provider = providerFor(issuer, redirectUri, keys);
  return { kid: keys[0].kid };
}

async function readJson(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

const control = createServer((req, res) => {
  const answer = async () => {
    if (req.method === 'POST' && req.url === '/mint') return mint((await readJson(req)).sub);
    if (req.method === 'POST' && req.url === '/rotate') return rotate();
    throw new Error(`no such control request: ${req.method} ${req.url}`);
  };
  answer().then(
    (body) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(body));
    },
    (error) => {
      res.statusCode = 500;
      res.end(String(error.stack || error));
    },
  );
});
const controlPort = await listen(control);
console.log(JSON.stringify({ issuer, control: `http://127.0.0.1:${controlPort}`, clientId: CLIENT_ID }));

// The test ends the process by closing stdin (or killing it).
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
