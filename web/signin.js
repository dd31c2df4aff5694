// credbroker browser client, the OpenID sign-in flows: the authorization request (code + PKCE
// or implicit ID token), the callback's checks (state, redirect URI, RFC 9207 `iss`, nonce), code
// redemption, refresh, silent renewal in a hidden iframe and RP-initiated logout.
//
// Loaded by credbroker.js on first use (a dynamic import), so a signed-in page that only signs
// requests does not download it (issue 12's size budget). It has no imports: what it needs from
// the client (its environment, options, clock and error type) comes in `ctx`, so the module
// graph has no cycle and the minified builds need no shared chunk.
//
// ctx: { env: { window, fetch, setTimeout, clearTimeout, flowStorage }, options, clock (SkewClock),
//        config(), brokerBase(), CredbrokerError, readJson, problemError, decodeJwtPayload,
//        safeParse }

const FLOW_PREFIX = 'credbroker.flow.';
/** A sign-in that takes longer than this (user at the provider's page) is forgotten. */
const FLOW_TTL_MS = 15 * 60_000;
const SILENT_TIMEOUT_MS = 10_000;
/** A throttled sign-in (429, e.g. `pool_throttled`) is asked again this many times before it fails. */
const THROTTLED_RETRIES = 4;
/** Longest Retry-After honoured, in seconds: a bogus header cannot park the sign-in for hours. */
const MAX_RETRY_AFTER_S = 30;

/**
 * Redirects this tab to the provider's authorization endpoint; the flow (state, nonce, PKCE
 * verifier, where to come back to) waits in sessionStorage for the callback.
 */
export async function startSignIn(ctx, provider, { returnTo, prompt, loginHint } = {}) {
  const flow = await newFlow(ctx, provider, redirectUri(ctx, provider));
  flow.returnTo = returnTo;
  pruneFlows(ctx);
  ctx.env.flowStorage.setItem(FLOW_PREFIX + flow.state, JSON.stringify(flow));
  ctx.env.window.location.assign(authorizationUrl(ctx, provider, flow, { prompt, loginHint }));
}

/**
 * Checks a callback (`params`, from `url`) against the flow this tab started and gets its
 * tokens. `providerNamed(name)` resolves the flow's provider. Returns { provider, tokens,
 * returnTo }.
 */
export async function readCallback(ctx, url, params, providerNamed) {
  const flow = takeFlow(ctx, params.get('state'));
  checkRedirectUri(ctx, url, flow);
  const provider = await providerNamed(flow.provider);
  const tokens = await answerTokens(ctx, provider, flow, params);
  return { provider, tokens, returnTo: flow.returnTo };
}

/** New tokens without the user: the refresh token if there is one, else prompt=none in a frame. */
export async function renewTokens(ctx, provider, refreshToken) {
  let tokens = null;
  if (refreshToken) tokens = await refresh(ctx, provider, refreshToken);
  return tokens ?? silentAuthorize(ctx, provider);
}

/**
 * Exchanges an ID token at the broker (POST {broker}/auth/signin/{provider}); sets the clock from
 * its serverTime. Returns the new session: who, and the credentials. `renewing`: the session
 * being renewed, whose identity id goes along.
 */
export async function exchangeIdToken(ctx, provider, idToken, renewing) {
  const { clock } = ctx;
  const config = await ctx.config();
  const path = (config.signinPath ?? '/auth/signin/{provider}').replace('{provider}', encodeURIComponent(provider.name));
  const [response, sentAt] = await postSignIn(ctx, new URL(path.replace(/^\//, ''), ctx.brokerBase()).href, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    // A renewal sends back the identity id this provider's session got, so the broker can skip
    // Cognito's GetId; Cognito refuses an id that is not this login's, and the broker then asks GetId.
    body: JSON.stringify({ id_token: idToken, identity_id: renewing?.provider === provider.name ? renewing.identityId : undefined }),
  });
  const body = await ctx.readJson(response);
  if (!response.ok) throw ctx.problemError(body, response.status, 'signin_failed');
  clock.observe(Date.parse(body.serverTime), sentAt, clock.localNow());
  const expiration = Date.parse(body.credentials?.expiration);
  if (!body.credentials?.accessKeyId || !Number.isFinite(expiration)) {
    throw new ctx.CredbrokerError('bad_response', 'the broker answered without usable credentials');
  }
  const { accessKeyId, secretAccessKey, sessionToken } = body.credentials;
  return {
    identityId: body.identityId,
    provider: body.provider ?? provider.name,
    subject: body.subject,
    claims: body.claims ?? {},
    // The identity assertion (docs/identity.md) lives and renews with the credentials.
    credentials: { accessKeyId, secretAccessKey, sessionToken, expiration, assertion: body.identityAssertion },
    issuedAt: Date.parse(body.serverTime) || clock.now(),
    skewMs: clock.skewMs,
  };
}

// Cognito's quotas are per account and Region (docs/exchange.md): on a busy morning the broker
// answers 429 `pool_throttled` with Retry-After once its own retries are spent. Waiting that long
// plus a random part of as much again (so throttled users do not all come back at once) and
// asking again, a bounded number of times, means no user sees the error while Cognito catches
// up. Answers the last response and when its request was sent (the clock measures from it).
async function postSignIn(ctx, url, init) {
  for (let retries = THROTTLED_RETRIES; ; retries--) {
    const sentAt = ctx.clock.localNow();
    const response = await ctx.env.fetch(url, init);
    if (response.status !== 429 || !retries) return [response, sentAt];
    const seconds = Math.min(Math.max(Number(response.headers.get('retry-after')), 1) || 1, MAX_RETRY_AFTER_S);
    await new Promise((resolve) => ctx.env.setTimeout(resolve, seconds * 1000 * (1 + Math.random())));
  }
}

/** The provider's RP-initiated logout URL (null when it has no end_session_endpoint). */
export function endSessionUrl(ctx, provider, idToken, back) {
  if (!provider?.endSessionEndpoint) return null;
  const url = new URL(provider.endSessionEndpoint);
  url.searchParams.set('client_id', clientId(ctx, provider));
  url.searchParams.set('post_logout_redirect_uri', back);
  if (idToken) url.searchParams.set('id_token_hint', idToken);
  return url.href;
}

/** The PKCE S256 code challenge of a verifier. */
export async function pkceChallenge(verifier) {
  return base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
}

async function newFlow(ctx, provider, redirectUri) {
  // The broker's `flow` (per provider, GET /auth/config); older brokers send only publicClient.
  const mode = provider.flow ?? (provider.publicClient ? 'code' : 'id_token');
  const flow = { provider: provider.name, mode, state: randomToken(), nonce: randomToken(), redirectUri, createdAt: ctx.clock.localNow() };
  if (mode === 'code') {
    flow.verifier = randomToken();
    flow.challenge = await pkceChallenge(flow.verifier);
  }
  return flow;
}

function authorizationUrl(ctx, provider, flow, { prompt, loginHint } = {}) {
  const url = new URL(provider.authorizationEndpoint);
  const params = {
    client_id: clientId(ctx, provider),
    redirect_uri: flow.redirectUri,
    response_type: flow.mode,
    scope: scopeFor(ctx, provider),
    state: flow.state,
    nonce: flow.nonce,
  };
  if (flow.challenge) Object.assign(params, { code_challenge: flow.challenge, code_challenge_method: 'S256' });
  if (prompt) params.prompt = prompt;
  if (loginHint) params.login_hint = loginHint;
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return url.href;
}

function scopeFor(ctx, provider) {
  const scope = ctx.options.scope;
  if (typeof scope === 'object') return scope[provider.name] ?? 'openid';
  // The broker's configured scopes for this provider win over the page's one default string.
  if (provider.scopes?.length) return provider.scopes.join(' ');
  // Without these, Microsoft and Salesforce give the page no refresh token.
  return scope + ({ microsoft: ' offline_access', salesforce: ' refresh_token' }[provider.kind] ?? '');
}

function clientId(ctx, provider) {
  const id = ctx.options.clientIds[provider.name] ?? provider.clientId ?? provider.clientIds?.[0];
  if (!id) throw new ctx.CredbrokerError('bad_config', `no client id for provider ${provider.name}`);
  return id;
}

function redirectUri(ctx, provider) {
  const option = ctx.options.redirectUri;
  const href = ctx.env.window.location.href;
  const configured = typeof option === 'object' ? option[provider.name] : option;
  if (configured) return new URL(configured, href).href;
  const here = new URL(href);
  return here.origin + here.pathname;
}

function pruneFlows(ctx) {
  const store = ctx.env.flowStorage;
  const cutoff = ctx.clock.localNow() - FLOW_TTL_MS;
  for (let i = store.length - 1; i >= 0; i--) {
    const key = store.key(i);
    if (key?.startsWith(FLOW_PREFIX) && !(ctx.safeParse(store.getItem(key))?.createdAt > cutoff)) store.removeItem(key);
  }
}

function takeFlow(ctx, state) {
  const key = FLOW_PREFIX + state;
  const flow = state ? ctx.safeParse(ctx.env.flowStorage.getItem(key)) : null;
  if (!flow || flow.state !== state) {
    throw new ctx.CredbrokerError('state_mismatch', 'this sign-in answer matches no sign-in started in this tab');
  }
  // One use only: a replayed callback URL finds nothing.
  ctx.env.flowStorage.removeItem(key);
  if (ctx.clock.localNow() - flow.createdAt > FLOW_TTL_MS) throw new ctx.CredbrokerError('flow_expired', 'the sign-in took too long; start again');
  return flow;
}

// The checks every answer goes through, redirect or silent: RFC 9207 `iss`, the OAuth error,
// the tokens, the nonce.
async function answerTokens(ctx, provider, flow, params) {
  checkIssuer(ctx, provider, params);
  const error = params.get('error');
  if (error) throw new ctx.CredbrokerError(error, params.get('error_description') ?? `the provider answered ${error}`);
  const tokens = await tokensFromCallback(ctx, provider, flow, params);
  if (ctx.decodeJwtPayload(tokens.id_token).nonce !== flow.nonce) {
    throw new ctx.CredbrokerError('nonce_mismatch', 'the ID token was not issued for this sign-in');
  }
  return tokens;
}

async function tokensFromCallback(ctx, provider, flow, params) {
  if (flow.mode === 'id_token') {
    const idToken = params.get('id_token');
    if (!idToken) throw new ctx.CredbrokerError('no_id_token', 'the provider returned no ID token');
    return { id_token: idToken };
  }
  const code = params.get('code');
  if (!code) throw new ctx.CredbrokerError('no_code', 'the provider returned no authorization code');
  const tokens = await tokenRequest(ctx, provider, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: flow.redirectUri,
    client_id: clientId(ctx, provider),
    code_verifier: flow.verifier,
  });
  if (!tokens.id_token) throw new ctx.CredbrokerError('no_id_token', 'the token endpoint returned no ID token');
  return tokens;
}

async function tokenRequest(ctx, provider, form) {
  const response = await ctx.env.fetch(provider.tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams(form).toString(),
  });
  const body = await ctx.readJson(response);
  if (!response.ok) {
    throw new ctx.CredbrokerError(body.error ?? 'token_error', body.error_description ?? `token endpoint answered ${response.status}`, {
      status: response.status,
    });
  }
  return body;
}

async function refresh(ctx, provider, refreshToken) {
  try {
    const tokens = await tokenRequest(ctx, provider, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId(ctx, provider) });
    return tokens.id_token ? tokens : null;
  } catch (error) {
    // A refused refresh token (revoked, rotated elsewhere) still leaves the silent route.
    if (error.code === 'invalid_grant') return null;
    throw error;
  }
}

// ---- silent renewal (prompt=none in a hidden iframe) -------------------------------------------

async function silentAuthorize(ctx, provider) {
  const doc = ctx.env.window.document;
  if (!doc?.createElement) throw new ctx.CredbrokerError('no_silent_renewal', 'no document to renew in');
  const silent = ctx.options.silentRedirectUri;
  const uri = silent ? new URL(silent, ctx.env.window.location.href).href : redirectUri(ctx, provider);
  const flow = await newFlow(ctx, provider, uri);
  const params = await runFrame(ctx, doc, authorizationUrl(ctx, provider, flow, { prompt: 'none' }), uri);
  if (params.get('state') !== flow.state) throw new ctx.CredbrokerError('state_mismatch', 'silent renewal answered for another request');
  return answerTokens(ctx, provider, flow, params);
}

function runFrame(ctx, doc, src, redirectUri) {
  const { setTimeout, clearTimeout } = ctx.env;
  return new Promise((resolve, reject) => {
    const frame = doc.createElement('iframe');
    frame.hidden = true;
    frame.setAttribute('aria-hidden', 'true');
    frame.title = 'credbroker silent renewal';
    const done = (fn, value) => {
      clearTimeout(timeout);
      frame.remove();
      fn(value);
    };
    const timeout = setTimeout(() => done(reject, new ctx.CredbrokerError('silent_timeout', 'silent renewal got no answer')), SILENT_TIMEOUT_MS);
    frame.addEventListener('load', () => {
      let href;
      try {
        href = frame.contentWindow.location.href; // throws while on the provider's origin
      } catch {
        return;
      }
      const landed = new URL(href);
      if (landed.origin + landed.pathname !== redirectUri.replace(/[?#].*$/, '')) return;
      const params = callbackParams(landed);
      if (params) done(resolve, params);
    });
    frame.src = src;
    doc.body.append(frame);
  });
}

// ---- checks and helpers ------------------------------------------------------------------------

// IdP mix-up (RFC 9207): with several providers, one of them malicious, the answer to a sign-in
// started at provider A may come from provider B; the code (and PKCE verifier) would then go to
// A's token endpoint. The `iss` of the answer must be the flow's provider; a provider that
// advertises `authorization_response_iss_parameter_supported` must send it. Providers that send
// no `iss` are told apart by their redirect URI (`redirectUri: { provider: uri }`), which
// checkRedirectUri enforces.
function checkIssuer(ctx, provider, params) {
  const iss = params.get('iss');
  if (iss === null ? provider.issParameterSupported : iss !== provider.issuer) {
    throw new ctx.CredbrokerError('iss_mismatch', `answer from ${iss}, not ${provider.issuer}`);
  }
}

/** The answer must arrive at the redirect URI its flow sent the user off with. */
function checkRedirectUri(ctx, url, flow) {
  const landed = new URL(url);
  const expected = new URL(flow.redirectUri);
  if (landed.origin + landed.pathname !== expected.origin + expected.pathname) {
    throw new ctx.CredbrokerError('redirect_mismatch', 'answer at another redirect URI');
  }
}

/** The OAuth answer in a URL (query for the code flow, fragment for the implicit one), or null. */
export function callbackParams(url) {
  for (const params of [new URLSearchParams(url.hash.slice(1)), url.searchParams]) {
    if (params.has('state') && (params.has('code') || params.has('id_token') || params.has('error'))) return params;
  }
  return null;
}

const CALLBACK_PARAMS = ['code', 'state', 'id_token', 'access_token', 'token_type', 'expires_in', 'scope',
  'session_state', 'error', 'error_description', 'error_uri', 'iss', 'authuser', 'hd', 'prompt'];

/** `url` without the OAuth answer: no code or token stays in the address bar. */
export function stripCallback(url) {
  for (const name of CALLBACK_PARAMS) url.searchParams.delete(name);
  url.hash = '';
  return url.href;
}

/** 32 random bytes, base64url (43 characters): unguessable `state`, `nonce` and PKCE verifier. */
function randomToken() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

function base64url(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
