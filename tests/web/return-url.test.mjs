// web/return-url.js against the open-redirect corpus (tests/web/data/open-redirects.txt): every
// payload, as written and as it arrives through `?next=`, comes back as '/' or as a path on the
// app's own origin; ordinary return paths come back unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { returnPath, MAX_RETURN_URL_CHARS } from '../../web/return-url.js';

const ORIGIN = 'http://127.0.0.1:8787';
/** Bases a return path may later be resolved against (the sign-in page, a deep app page). */
const BASES = [`${ORIGIN}/`, `${ORIGIN}/api/app/notes/`, `${ORIGIN}/?next=x`];

const corpus = readFileSync(new URL('./data/open-redirects.txt', import.meta.url), 'utf8')
  .split('\n')
  .filter((line) => line.trim() && !line.startsWith('#'))
  .map((line) => JSON.parse(line));

/** The forms a payload reaches returnPath in: as written, and read back from `?next=` (raw or encoded). */
function arrivals(payload) {
  const fromQuery = (query) => new URL(`${ORIGIN}/?next=${query}`).searchParams.get('next') ?? '';
  return [payload, fromQuery(payload), fromQuery(encodeURIComponent(payload))];
}

/** Why `result` is not a harmless same-origin path, or null when it is. */
function unsafe(result) {
  if (result === '/') return null;
  if (!result.startsWith('/') || result.startsWith('//')) return 'not a single-slash path';
  if (/[\\\u0000-\u001f\u007f]/.test(result)) return 'backslash or control character';
  for (const base of BASES) {
    if (new URL(result, base).origin !== ORIGIN) return `leaves the origin from ${base}`;
  }
  // Decoding it again (a server, a second redirect) must not make it leave either.
  let decoded = result;
  for (let round = 0; round < 3; round++) {
    try {
      decoded = decodeURIComponent(decoded);
    } catch {
      break;
    }
    if (decoded.startsWith('//') || decoded.includes('\\') || new URL(decoded, ORIGIN).origin !== ORIGIN) {
      return `leaves the origin once decoded: ${decoded}`;
    }
  }
  return null;
}

test('the corpus covers the payload classes with over 100 entries', () => {
  assert.ok(corpus.length >= 100, `only ${corpus.length} payloads`);
});

test('every open-redirect payload lands on / or on a same-origin path', () => {
  const failures = [];
  let toRoot = 0;
  for (const payload of corpus) {
    for (const input of arrivals(payload)) {
      const result = returnPath(input, ORIGIN);
      const why = unsafe(result);
      if (why) failures.push(`${JSON.stringify(input)} -> ${JSON.stringify(result)}: ${why}`);
      if (result === '/') toRoot++;
    }
  }
  assert.deepEqual(failures, []);
  // Most of them are refused outright rather than kept as odd-looking local paths.
  assert.ok(toRoot > corpus.length * 2, `only ${toRoot} of ${corpus.length * 3} went to /`);
});

test('the classic bypasses of a startsWith("/") check go to /', () => {
  for (const payload of ['/\\evil.test', '/%5Cevil.test', '/%09/evil.test', '/.//evil.test', '//evil.test',
    '/%252F%252Fevil.test', '\t//evil.test', 'javascript:alert(1)', '/\u3000/evil.test']) {
    assert.equal(returnPath(payload, ORIGIN), '/', JSON.stringify(payload));
  }
});

test('ordinary return paths come back unchanged, query and fragment included', () => {
  for (const path of ['/', '/api/app/', '/api/app/notes?sort=new&page=2#top', '/caf%C3%A9', '/?next=%2Fapi%2Fapp%2F',
    '/api/app/search?q=a%20b', '/a/b/c.html', '/api/app/item;v=1']) {
    assert.equal(returnPath(path, ORIGIN), path);
  }
  // Normalised the way the browser would (a space is encoded; dot segments resolve).
  assert.equal(returnPath('/search?q=a b', ORIGIN), '/search?q=a%20b');
  assert.equal(returnPath('/api/app/../whoami', ORIGIN), '/api/whoami');
});

test('the full URL of this origin is accepted as its path; other origins are not', () => {
  assert.equal(returnPath(`${ORIGIN}/api/app/?x=1`, ORIGIN), '/api/app/?x=1');
  assert.equal(returnPath(`${ORIGIN}//evil.test/`, ORIGIN), '/');
  assert.equal(returnPath(`${ORIGIN}@evil.test/`, ORIGIN), '/');
  assert.equal(returnPath(`${ORIGIN}0/`, ORIGIN), '/');
  assert.equal(returnPath('http://127.0.0.1:9999/api/', ORIGIN), '/');
  assert.equal(returnPath('/api/app/?x=1', `${ORIGIN}/some/page?y=2`), '/api/app/?x=1');
  assert.equal(returnPath('/api/app/', 'http://127.0.0.1:9999'), '/api/app/');
});

test('values that are not strings, too long or unusable give /', () => {
  for (const value of [null, undefined, 42, {}, ['/a'], '/' + 'a'.repeat(MAX_RETURN_URL_CHARS)]) {
    assert.equal(returnPath(value, ORIGIN), '/');
  }
  assert.equal(returnPath('/a', 'not an origin'), '/');
  assert.equal(returnPath('/' + 'a'.repeat(MAX_RETURN_URL_CHARS - 1), ORIGIN).length, MAX_RETURN_URL_CHARS);
});
