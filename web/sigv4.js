// AWS Signature Version 4 (AWS4-HMAC-SHA256), header and query (presigned) forms.
//
// Dependency-free and built on WebCrypto only (crypto.subtle HMAC / SHA-256), so the same module
// runs in pages, service workers and node >= 20. It signs a *wire* request: `path` and `query`
// exactly as they appear on the request line (so a browser passes `url.pathname` and
// `url.search`), which is what the verifier on the other side sees too.
//
// Conformance: reproduces every case of the AWS signing test suite (tests/web/sigv4.test.mjs).

/** The only algorithm this module speaks. */
export const ALGORITHM = 'AWS4-HMAC-SHA256';
/** Hex SHA-256 of the empty string: the payload hash of a request without a body. */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** The longest validity SigV4 allows for a presigned URL (7 days), in seconds. */
export const MAX_PRESIGN_SECONDS = 604800;

const textEncoder = new TextEncoder();
const hexDigits = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lowercase hex of bytes. */
export function toHex(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  let out = '';
  for (const byte of bytes) out += hexDigits[byte];
  return out;
}

/** Bytes of a string (UTF-8), an ArrayBuffer or any ArrayBuffer view, without copying views. */
export function toBytes(data) {
  if (typeof data === 'string') return textEncoder.encode(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('expected a string, an ArrayBuffer or an ArrayBuffer view');
}

/** Hex SHA-256 of a string or bytes. */
export async function sha256Hex(data) {
  return toHex(await crypto.subtle.digest('SHA-256', toBytes(data)));
}

function importHmacKey(keyBytes) {
  return crypto.subtle.importKey('raw', keyBytes, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
}

async function hmac(key, data) {
  const cryptoKey = key instanceof CryptoKey ? key : await importHmacKey(key);
  return crypto.subtle.sign('HMAC', cryptoKey, toBytes(data));
}

/**
 * RFC 3986 percent-encoding as SigV4 wants it: everything but `A-Z a-z 0-9 - . _ ~` becomes
 * `%XX` (uppercase, UTF-8), optionally keeping `/` (for paths).
 */
export function uriEncode(value, keepSlash = false) {
  // encodeURIComponent leaves `!'()*` alone; SigV4 does not.
  const encoded = encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase(),
  );
  return keepSlash ? encoded.replace(/%2F/g, '/') : encoded;
}

/**
 * Decodes `%XX` sequences and `+` (as a space) like application/x-www-form-urlencoded, leniently:
 * a `%` not followed by two hex digits stays as it is, invalid UTF-8 becomes U+FFFD. That is how
 * the gateway's verifier (and AWS) read a query string, so both sides canonicalize alike.
 */
export function formDecode(value) {
  const bytes = textEncoder.encode(value.replace(/\+/g, ' '));
  const out = new Uint8Array(bytes.length);
  let length = 0;
  for (let i = 0; i < bytes.length; i++) {
    const high = hexValue(bytes[i + 1]);
    const low = hexValue(bytes[i + 2]);
    if (bytes[i] === 0x25 && high >= 0 && low >= 0) {
      out[length++] = high * 16 + low;
      i += 2;
    } else {
      out[length++] = bytes[i];
    }
  }
  return new TextDecoder().decode(out.subarray(0, length));
}

function hexValue(byte) {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x37;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57;
  return -1;
}

/** RFC 3986 section 5.2.4 dot-segment removal, plus merging of empty segments (`//`). */
export function normalizePath(path) {
  if (path === '') return '/';
  const absolute = path.startsWith('/') ? path : '/' + path;
  const kept = [];
  for (const segment of absolute.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') kept.pop();
    else kept.push(segment);
  }
  const endsInDirectory = /\/(\.\.?)?$/.test(absolute);
  const joined = '/' + kept.join('/');
  return endsInDirectory && !joined.endsWith('/') ? joined + '/' : joined;
}

/**
 * The canonical URI. `doubleEncode` (every AWS service but S3) percent-encodes the wire path once
 * more, so a wire `%20` is signed as `%2520`; S3 signs the wire path as it is.
 */
export function canonicalPath(path, { normalize = true, doubleEncode = true } = {}) {
  const normalized = normalize ? normalizePath(path) : path || '/';
  return doubleEncode ? uriEncode(normalized, true) : normalized;
}

/** Splits a wire query string (with or without the leading `?`) into decoded [key, value] pairs. */
export function parseQuery(query) {
  const text = query.startsWith('?') ? query.slice(1) : query;
  const pairs = [];
  for (const part of text.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    pairs.push([formDecode(key), formDecode(value)]);
  }
  return pairs;
}

/** The canonical query string of decoded [key, value] pairs: encoded, sorted by key then value. */
export function canonicalQuery(pairs) {
  return pairs
    .map(([key, value]) => [uriEncode(key), uriEncode(value)])
    .sort(([k1, v1], [k2, v2]) => compare(k1, k2) || compare(v1, v2))
    .map(([key, value]) => `${key}=${value}`)
    .join('&');
}

// Code-unit order equals byte order here: the strings are pure ASCII once encoded.
function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Canonical headers from [name, value] pairs (a `Headers` object, an array of pairs, or a plain
 * object): names lowercased and sorted, values trimmed with inner whitespace runs collapsed,
 * repeated names joined with `,` in the order given.
 */
export function canonicalHeaders(headers) {
  const byName = new Map();
  for (const [name, value] of headerPairs(headers)) {
    const key = name.toLowerCase();
    const clean = String(value).trim().replace(/\s+/g, ' ');
    byName.set(key, byName.has(key) ? `${byName.get(key)},${clean}` : clean);
  }
  const names = [...byName.keys()].sort(compare);
  return {
    canonical: names.map((name) => `${name}:${byName.get(name)}\n`).join(''),
    signedHeaders: names.join(';'),
  };
}

function headerPairs(headers) {
  if (!headers) return [];
  if (typeof headers[Symbol.iterator] === 'function') return [...headers];
  return Object.entries(headers);
}

/** `20150830T123600Z` from a Date. */
export function amzDate(date) {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/**
 * Derived signing keys (`kSigning`), one per (secret, date, region, service). Deriving costs four
 * HMACs; a signer makes one per request otherwise. Entries hold the promise, so concurrent first
 * uses share one derivation. Bounded: the oldest entry goes when a new one would exceed `max`.
 */
export class SigningKeyCache {
  #entries = new Map();
  #max;

  constructor(max = 4) {
    this.#max = max;
  }

  /** The HMAC `CryptoKey` for `kSigning`. */
  get(secretAccessKey, date, region, service) {
    const id = JSON.stringify([secretAccessKey, date, region, service]);
    let entry = this.#entries.get(id);
    if (!entry) {
      entry = deriveSigningKey(secretAccessKey, date, region, service);
      // A failed derivation must not stick.
      entry.catch(() => this.#entries.delete(id));
      this.#entries.set(id, entry);
      if (this.#entries.size > this.#max) this.#entries.delete(this.#entries.keys().next().value);
    }
    return entry;
  }

  /** Forgets every key (e.g. on sign-out, so no derived key outlives its secret). */
  clear() {
    this.#entries.clear();
  }
}

async function deriveSigningKey(secretAccessKey, date, region, service) {
  const kDate = await hmac(textEncoder.encode('AWS4' + secretAccessKey), date);
  const kRegion = await hmac(kDate, region);
  const kService = await hmac(kRegion, service);
  const kSigning = await hmac(kService, 'aws4_request');
  return importHmacKey(kSigning);
}

/**
 * A signer for one region and service.
 *
 * Options: `normalizePath` (default true), `doubleEncodePath` (default true; false for S3),
 * `signSessionToken` (default true: the token is part of the signature; false adds it after
 * signing, as a few services expect), `keyCache` (a SigningKeyCache to share).
 *
 * A request is `{ method, path, query?, headers?, payloadHash? }`: `path` and `query` as on the
 * wire, `headers` the ones to sign (must include `host`, or pass `host`), `payloadHash` the hex
 * SHA-256 of the body (default: empty body).
 */
export function createSigner({
  region,
  service,
  normalizePath: normalize = true,
  doubleEncodePath = true,
  signSessionToken = true,
  keyCache = new SigningKeyCache(),
}) {
  if (!region || !service) throw new TypeError('createSigner needs a region and a service');

  function scopeOf(date) {
    return `${amzDate(date).slice(0, 8)}/${region}/${service}/aws4_request`;
  }

  async function finish(canonicalRequest, credentials, date) {
    const stamp = amzDate(date);
    const scope = scopeOf(date);
    const stringToSign = [ALGORITHM, stamp, scope, await sha256Hex(canonicalRequest)].join('\n');
    const key = await keyCache.get(credentials.secretAccessKey, stamp.slice(0, 8), region, service);
    const signature = toHex(await hmac(key, stringToSign));
    return { canonicalRequest, stringToSign, signature };
  }

  function canonicalRequestOf(request, queryPairs, headers) {
    const { canonical, signedHeaders } = canonicalHeaders(headers);
    const text = [
      request.method.toUpperCase(),
      canonicalPath(request.path, { normalize, doubleEncode: doubleEncodePath }),
      canonicalQuery(queryPairs),
      canonical,
      signedHeaders,
      request.payloadHash ?? EMPTY_SHA256,
    ].join('\n');
    return { text, signedHeaders };
  }

  return {
    region,
    service,
    keyCache,
    signSessionToken,
    // The building blocks `presign()` (a separate function, so that code that never presigns,
    // like the service worker, does not ship it) shares with `sign()`.
    scopeOf,
    finish,
    canonicalRequestOf,

    /**
     * Header signing. Returns the canonical request, string to sign and signature, plus the
     * headers to add, in order, as [name, value] pairs (`X-Amz-Security-Token`, `X-Amz-Date`,
     * `x-amz-content-sha256` when `signBody`, `Authorization`).
     */
    async sign(request, credentials, date, { signBody = false } = {}) {
      const stamp = amzDate(date);
      const added = [];
      const token = credentials.sessionToken;
      if (token) added.push(['X-Amz-Security-Token', token]);
      added.push(['X-Amz-Date', stamp]);
      if (signBody) added.push(['x-amz-content-sha256', request.payloadHash ?? EMPTY_SHA256]);
      const signed = [...headerPairs(request.headers), ...withHost(request)];
      for (const pair of added) {
        if (pair[0] !== 'X-Amz-Security-Token' || signSessionToken) signed.push(pair);
      }
      const { text, signedHeaders } = canonicalRequestOf(request, parseQuery(request.query ?? ''), signed);
      const result = await finish(text, credentials, date);
      const authorization =
        `${ALGORITHM} Credential=${credentials.accessKeyId}/${scopeOf(date)}, ` +
        `SignedHeaders=${signedHeaders}, Signature=${result.signature}`;
      added.push(['Authorization', authorization]);
      return { ...result, authorization, headers: added };
    },
  };
}

/**
 * Query signing with `signer` (from createSigner): a presigned URL valid `expiresIn` seconds.
 * Returns the canonical request, string to sign, signature and `query`: the wire query with the
 * X-Amz-* parameters appended.
 */
export async function presign(signer, request, credentials, date, expiresIn) {
  if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > MAX_PRESIGN_SECONDS) {
    throw new RangeError(`expiresIn must be a whole number of seconds in 1..${MAX_PRESIGN_SECONDS}`);
  }
  const headers = [...headerPairs(request.headers), ...withHost(request)];
  const { signedHeaders } = canonicalHeaders(headers);
  const authParams = [
    ['X-Amz-Algorithm', ALGORITHM],
    ['X-Amz-Credential', `${credentials.accessKeyId}/${signer.scopeOf(date)}`],
    ['X-Amz-Date', amzDate(date)],
    ['X-Amz-SignedHeaders', signedHeaders],
    ['X-Amz-Expires', String(expiresIn)],
  ];
  const token = credentials.sessionToken ? [['X-Amz-Security-Token', credentials.sessionToken]] : [];
  const signedParams = signer.signSessionToken ? [...authParams, ...token] : authParams;
  const wireQuery = (request.query ?? '').replace(/^\?/, '');
  const { text } = signer.canonicalRequestOf(request, [...parseQuery(wireQuery), ...signedParams], headers);
  const result = await signer.finish(text, credentials, date);
  const appended = [...authParams, ...token, ['X-Amz-Signature', result.signature]]
    .map(([key, value]) => `${key}=${uriEncode(value)}`)
    .join('&');
  return { ...result, query: wireQuery ? `${wireQuery}&${appended}` : appended };
}

function withHost(request) {
  return request.host ? [['host', request.host]] : [];
}
