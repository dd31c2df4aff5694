// Every case of the AWS signing test suite (tests/data/sigv4-test-suite/v4), header and query
// forms, byte for byte: canonical request, string to sign, signature and the signed request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { createSigner, presign, sha256Hex, SigningKeyCache, canonicalPath, uriEncode, formDecode } from '../../web/sigv4.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const suite = join(root, 'tests', 'data', 'sigv4-test-suite', 'v4');

// request.txt: request line, header lines (a line starting with whitespace continues the previous
// header), an empty line, the body.
function parseRequest(text) {
  const lines = text.split('\n');
  // The target may hold a raw space (get-space-*): it runs up to the last ` HTTP/`.
  const method = lines[0].slice(0, lines[0].indexOf(' '));
  const target = lines[0].slice(method.length + 1, lines[0].lastIndexOf(' HTTP/'));
  const headerLines = [];
  let i = 1;
  for (; i < lines.length && lines[i] !== ''; i++) {
    if (/^\s/.test(lines[i])) headerLines[headerLines.length - 1] += '\n' + lines[i];
    else headerLines.push(lines[i]);
  }
  const body = lines.slice(i + 1).join('\n');
  const q = target.indexOf('?');
  return {
    method,
    path: q < 0 ? target : target.slice(0, q),
    query: q < 0 ? '' : target.slice(q + 1),
    headerLines,
    headers: headerLines.map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]),
    body,
  };
}

function loadCase(name) {
  const dir = join(suite, name);
  const read = (file) => readFileSync(join(dir, file), 'utf8');
  return { context: JSON.parse(read('context.json')), request: parseRequest(read('request.txt')), read };
}

function signerFor(context) {
  return createSigner({
    region: context.region,
    service: context.service,
    normalizePath: context.normalize,
    signSessionToken: !context.omit_session_token,
  });
}

function credentialsOf(context) {
  return {
    accessKeyId: context.credentials.access_key_id,
    secretAccessKey: context.credentials.secret_access_key,
    sessionToken: context.credentials.token,
  };
}

async function signableOf(request) {
  return {
    method: request.method,
    path: request.path,
    query: request.query,
    headers: request.headers,
    payloadHash: await sha256Hex(request.body),
  };
}

const cases = existsSync(suite)
  ? readdirSync(suite, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort()
  : [];
const checked = { header: 0, query: 0 };

test('the suite is present', () => {
  assert.equal(cases.length, 38, `expected 38 case folders in ${suite}`);
});

for (const name of cases) {
  test(`header form: ${name}`, async () => {
    const { context, request, read } = loadCase(name);
    const signed = await signerFor(context).sign(
      await signableOf(request),
      credentialsOf(context),
      new Date(context.timestamp),
      { signBody: context.sign_body },
    );
    assert.equal(signed.canonicalRequest, read('header-canonical-request.txt'));
    assert.equal(signed.stringToSign, read('header-string-to-sign.txt'));
    assert.equal(signed.signature, read('header-signature.txt'));
    const lines = [
      `${request.method} ${request.path}${request.query ? '?' + request.query : ''} HTTP/1.1`,
      ...request.headerLines,
      ...signed.headers.map(([k, v]) => `${k}:${v}`),
    ];
    assert.equal(`${lines.join('\n')}\n\n${request.body}`, read('header-signed-request.txt'));
    checked.header++;
  });

  test(`query form: ${name}`, async () => {
    const { context, request, read } = loadCase(name);
    const signed = await presign(
      signerFor(context),
      await signableOf(request),
      credentialsOf(context),
      new Date(context.timestamp),
      context.expiration_in_seconds,
    );
    assert.equal(signed.canonicalRequest, read('query-canonical-request.txt'));
    assert.equal(signed.stringToSign, read('query-string-to-sign.txt'));
    assert.equal(signed.signature, read('query-signature.txt'));
    const lines = [`${request.method} ${request.path}?${signed.query} HTTP/1.1`, ...request.headerLines];
    assert.equal(`${lines.join('\n')}\n\n${request.body}`, read('query-signed-request.txt'));
    checked.query++;
  });
}

test('every case folder was checked in both forms', () => {
  assert.equal(checked.header, 38);
  assert.equal(checked.query, 38);
});

test('signing keys are cached per date and derived anew when the date changes', async () => {
  const cache = new SigningKeyCache();
  const signer = createSigner({ region: 'eu-west-1', service: 'execute-api', keyCache: cache });
  const credentials = { accessKeyId: 'AKID', secretAccessKey: 'secret' };
  const request = { method: 'GET', host: 'h', path: '/' };
  const morning = new Date('2024-05-01T08:00:00Z');
  const evening = new Date('2024-05-01T23:59:59Z');
  const nextDay = new Date('2024-05-02T00:00:01Z');
  await signer.sign(request, credentials, morning);
  const first = await cache.get('secret', '20240501', 'eu-west-1', 'execute-api');
  await signer.sign(request, credentials, evening);
  assert.equal(await cache.get('secret', '20240501', 'eu-west-1', 'execute-api'), first);
  await signer.sign(request, credentials, nextDay);
  const second = await cache.get('secret', '20240502', 'eu-west-1', 'execute-api');
  assert.notEqual(second, first);
  // A new secret (renewed credentials) gets its own key even on the same date.
  assert.notEqual(await cache.get('other', '20240502', 'eu-west-1', 'execute-api'), second);
});

test('browser paths are encoded once more, as API Gateway verifies them', () => {
  // A browser's URL.pathname is already percent-encoded: `/a b` arrives as `/a%20b`.
  assert.equal(canonicalPath('/api/a%20b/%E1%88%B4'), '/api/a%2520b/%25E1%2588%25B4');
  assert.equal(canonicalPath('/api/a%20b', { doubleEncode: false }), '/api/a%20b');
  assert.equal(uriEncode("!'()*~ /"), '%21%27%28%29%2A~%20%2F');
});

test('query decoding is lenient like the verifier: `+` is a space, stray `%` stays', () => {
  assert.equal(formDecode('a+b%20c%zz%4'), 'a b c%zz%4');
});
