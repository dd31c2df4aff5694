// A browser-less world for the client: a page (location, history, storages), a clock with
// timers, and a broker + OpenID provider + SigV4 API behind one fake fetch. The API side checks
// signatures by recomputing them with web/sigv4.js from what was actually sent.
import { createHash } from 'node:crypto';

import { createSigner } from '../../web/sigv4.js';

export const ORIGIN = 'http://127.0.0.1:8787';
export const REGION = 'eu-west-1';

export class MemoryStorage {
  #items = new Map();
  get length() {
    return this.#items.size;
  }
  key(i) {
    return [...this.#items.keys()][i] ?? null;
  }
  getItem(key) {
    return this.#items.has(key) ? this.#items.get(key) : null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
  }
}

/** A local clock (`now`) with timers that run only when the test advances time. */
export class FakeClock {
  constructor(start) {
    this.time = start;
    this.timers = new Map();
    this.nextId = 1;
  }
  now = () => this.time;
  setTimeout = (fn, ms) => {
    const id = this.nextId++;
    this.timers.set(id, { fn, ms, at: this.time + ms });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  /** Delays (ms) of the pending timers, sorted. */
  pendingDelays() {
    return [...this.timers.values()].map((t) => t.ms).sort((a, b) => a - b);
  }
  /** Moves time forward, firing due timers in order. */
  async advance(ms) {
    const end = this.time + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort(([, a], [, b]) => a.at - b.at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = Math.max(this.time, due[1].at);
      due[1].fn();
      await settle();
    }
    this.time = end;
  }
  /** As after sleep: time jumps `ms` at once, then every overdue timer fires back to back. */
  async wake(ms) {
    this.time += ms;
    const overdue = [...this.timers.entries()].filter(([, t]) => t.at <= this.time).sort(([, a], [, b]) => a.at - b.at);
    for (const [id, timer] of overdue) {
      this.timers.delete(id);
      timer.fn();
    }
    await settle();
  }
}

export async function settle() {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
}

export function fakeWindow(href = `${ORIGIN}/app/page?tab=2`) {
  const win = {
    location: {
      href,
      assigned: null,
      assign(url) {
        this.assigned = url;
      },
      replace(url) {
        this.href = url;
      },
    },
    history: {
      replaceState(_state, _title, url) {
        win.location.href = new URL(url, win.location.href).href;
      },
    },
    sessionStorage: new MemoryStorage(),
    localStorage: new MemoryStorage(),
  };
  return win;
}

export function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

export function jwt(claims) {
  return `${b64url(JSON.stringify({ alg: 'RS256', kid: 'k1' }))}.${b64url(JSON.stringify(claims))}.c2ln`;
}

const providers = [
  {
    name: 'dev',
    kind: 'oidc',
    issuer: `${ORIGIN}/dev-idp`,
    clientIds: ['credbroker-dev'],
    authorizationEndpoint: `${ORIGIN}/dev-idp/authorize`,
    tokenEndpoint: `${ORIGIN}/dev-idp/token`,
    publicClient: true,
    // Like the real dev provider: every authorization response carries `iss` (RFC 9207).
    issParameterSupported: true,
  },
  {
    name: 'google',
    kind: 'google',
    issuer: 'https://accounts.google.com',
    clientIds: ['123.apps.googleusercontent.com'],
    authorizationEndpoint: 'https://accounts.google.com/o/oauth2/v2/auth',
    tokenEndpoint: 'https://oauth2.googleapis.com/token',
    publicClient: false,
  },
  {
    // The broker's per-provider browser options: a client id other than the first audience,
    // configured scopes, and the ID-token flow although the provider serves public clients.
    name: 'corp',
    kind: 'oidc',
    issuer: 'https://idp.example.com/',
    clientIds: ['corp-mobile', 'corp-web'],
    clientId: 'corp-web',
    scopes: ['openid', 'email', 'groups'],
    flow: 'id_token',
    authorizationEndpoint: 'https://idp.example.com/authorize',
    tokenEndpoint: 'https://idp.example.com/token',
    publicClient: true,
  },
];

/**
 * The server side. `serverTime()` is the servers' clock (the test sets `skewMs` to put it ahead
 * of the page's); credentials last `lifetimeMs`.
 */
export class FakeServers {
  constructor(clock, { skewMs = 0, lifetimeMs = 3600_000 } = {}) {
    this.clock = clock;
    this.skewMs = skewMs;
    this.lifetimeMs = lifetimeMs;
    this.calls = [];
    this.challenges = new Map(); // state -> { challenge, nonce }
    this.codes = new Map(); // code -> state
    this.refreshNonce = undefined;
    this.issued = 0;
    this.api = null; // optional (request, body) => Response override
    this.throttle = 0; // how many sign-ins to answer 429 pool_throttled, as a broker past Cognito's quota
    this.retryAfter = '2';
    this.signer = createSigner({ region: REGION, service: 'execute-api' });
  }

  serverTime() {
    return this.clock.now() + this.skewMs;
  }

  /** The provider saw the authorization request: remember its PKCE challenge and nonce. */
  authorize(url) {
    const u = new URL(url);
    const state = u.searchParams.get('state');
    this.challenges.set(state, {
      challenge: u.searchParams.get('code_challenge'),
      nonce: u.searchParams.get('nonce'),
    });
    const code = `code-${this.codes.size + 1}`;
    this.codes.set(code, state);
    return code;
  }

  fetch = async (url, init = {}) => {
    const u = new URL(url);
    const body = init.body == null ? null : init.body;
    this.calls.push({ url: u.href, path: u.pathname, init });
    if (u.pathname === '/auth/config') return this.#json(this.config());
    if (u.pathname.startsWith('/auth/signin/')) return this.#signin(u, body);
    if (u.pathname === '/dev-idp/token') return this.#token(new URLSearchParams(body));
    if (u.pathname.startsWith('/api/')) return this.#api(u, init);
    return new Response('not found', { status: 404 });
  };

  config() {
    return {
      region: REGION,
      providers,
      signinPath: '/auth/signin/{provider}',
    };
  }

  callsTo(path) {
    return this.calls.filter((c) => c.path === path);
  }

  #json(value, status = 200, headers = {}) {
    return new Response(JSON.stringify(value), { status, headers: { 'content-type': 'application/json', ...headers } });
  }

  #token(form) {
    if (form.get('grant_type') === 'refresh_token') {
      if (form.get('refresh_token') !== 'rt-1') return this.#json({ error: 'invalid_grant' }, 400);
      return this.#json({ id_token: jwt({ sub: 'alice', nonce: this.refreshNonce }), refresh_token: 'rt-1' });
    }
    const state = this.codes.get(form.get('code'));
    const flow = state && this.challenges.get(state);
    if (!flow) return this.#json({ error: 'invalid_grant' }, 400);
    const challenge = createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url');
    if (challenge !== flow.challenge) return this.#json({ error: 'invalid_grant', error_description: 'PKCE' }, 400);
    this.codes.delete(form.get('code'));
    const nonce = this.nonceOverride ?? flow.nonce;
    return this.#json({ id_token: jwt({ sub: 'alice', nonce }), refresh_token: 'rt-1' });
  }

  #signin(u, body) {
    const { id_token: idToken } = JSON.parse(body);
    if (!idToken) return this.#json({ status: 400, code: 'missing_token' }, 400);
    if (this.throttle > 0) {
      this.throttle--;
      const problem = { status: 429, code: 'pool_throttled', title: 'Too many sign-ins right now' };
      return this.#json(problem, 429, { 'retry-after': this.retryAfter });
    }
    this.issued++;
    const now = this.serverTime();
    return this.#json({
      identityId: 'eu-west-1:0000',
      provider: u.pathname.split('/').pop(),
      subject: 'alice',
      credentials: {
        accessKeyId: `ASIA${this.issued}`,
        secretAccessKey: `secret-${this.issued}`,
        sessionToken: `token-${this.issued}`,
        expiration: new Date(now + this.lifetimeMs).toISOString(),
      },
      claims: { email: 'alice@example.com' },
      identityAssertion: `assertion-${this.issued}`,
      serverTime: new Date(now).toISOString(),
    });
  }

  /** Verifies the signature like the gateway (5-minute window), then answers. */
  async #api(u, init) {
    const headers = new Headers(init.headers);
    const bytes = init.body ? new Uint8Array(init.body) : new Uint8Array();
    const verdict = await this.verify(u, init.method ?? 'GET', headers, bytes);
    const date = new Date(this.serverTime()).toUTCString();
    if (verdict) return this.#json({ message: verdict }, 403, { date });
    if (this.api) return this.api(u, init);
    return this.#json({ ok: true }, 200, { date });
  }

  async verify(u, method, headers, bytes) {
    const auth = headers.get('authorization') ?? '';
    const match = /Credential=([^/]+)\/(\d{8})\/[^,]+, SignedHeaders=([^,]+), Signature=(\w+)/.exec(auth);
    if (!match) return 'Missing Authentication Token';
    const stamp = headers.get('x-amz-date');
    const iso = `${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 11)}:${stamp.slice(11, 13)}:${stamp.slice(13)}`;
    const signedAt = Date.parse(iso);
    const now = this.serverTime();
    const fmt = (ms) => new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    if (signedAt < now - 300_000) return `Signature expired: ${stamp} is now earlier than ${fmt(now - 300_000)} (${fmt(now)} - 5 min.)`;
    if (signedAt > now + 300_000) return `Signature not yet current: ${stamp} is still later than ${fmt(now + 300_000)} (${fmt(now)} + 5 min.)`;
    const n = match[1].slice(4);
    const signedNames = match[3].split(';');
    const signed = await this.signer.sign(
      {
        method,
        path: u.pathname,
        query: u.search,
        headers: signedNames.filter((h) => !h.startsWith('x-amz-')).map((h) => [h, h === 'host' ? u.host : headers.get(h)]),
        payloadHash: createHash('sha256').update(bytes).digest('hex'),
      },
      { accessKeyId: match[1], secretAccessKey: `secret-${n}`, sessionToken: headers.get('x-amz-security-token') },
      new Date(signedAt),
      { signBody: signedNames.includes('x-amz-content-sha256') },
    );
    return signed.authorization === auth ? null : 'The request signature we calculated does not match';
  }
}

/**
 * A document whose hidden iframes go to the provider with `prompt=none` and come back at once
 * with a code (the provider's session is alive), as silent renewal sees it.
 */
export function fakeDocument(servers) {
  return {
    body: { append: (frame) => setImmediate(() => frame.answer()) },
    createElement() {
      const onLoad = [];
      const frame = {
        src: null,
        contentWindow: { location: { href: 'about:blank' } },
        setAttribute() {},
        remove() {},
        addEventListener: (type, fn) => type === 'load' && onLoad.push(fn),
        answer() {
          const asked = new URL(frame.src).searchParams;
          const back = new URL(asked.get('redirect_uri'));
          back.search = new URLSearchParams({ code: servers.authorize(frame.src), state: asked.get('state'), iss: `${ORIGIN}/dev-idp` }).toString();
          frame.contentWindow.location.href = back.href;
          for (const fn of onLoad) fn();
        },
      };
      return frame;
    },
  };
}

/** navigator.locks for tabs of one origin: one holder per name at a time, in request order. */
export class FakeLocks {
  #tails = new Map();
  request(name, fn) {
    const previous = this.#tails.get(name) ?? Promise.resolve();
    const run = previous.then(() => fn());
    this.#tails.set(name, run.catch(() => {}));
    return run;
  }
}
