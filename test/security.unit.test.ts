/** The redactor and the outbound URL policy, fast: real HTTP on loopback, DNS answers injected. */
import { createServer, type Server } from 'node:http';
import { Redactor, REDACTED, bodyExcerpt, secrets } from '../src/security/redact';
import { UrlPolicy, hardRefusal, refusedAddress } from '../src/security/url-policy';
import { OutboundRefused, outboundRequest } from '../src/security/outbound';
import { JsonLogger } from '../src/observability/logger';

describe('redactor', () => {
  test('known values go, in plain, JSON-escaped and URL-encoded form; short values are not registered', () => {
    const r = new Redactor();
    r.addSecret('pa"ss word/1');
    r.addSecret('info'); // too short: would blank out ordinary words
    const text = `a pa"ss word/1 b ${JSON.stringify({ v: 'pa"ss word/1' })} c ${encodeURIComponent('pa"ss word/1')} info`;
    const out = r.redact(text);
    expect(out).not.toContain('pa"ss word/1');
    expect(out).not.toContain('pa\\"ss word/1');
    expect(out).not.toContain(encodeURIComponent('pa"ss word/1'));
    expect(out).toContain(' info');
    expect(out.split(REDACTED)).toHaveLength(4);
  });

  test('environment values: secret-looking names, or credential-looking values, not ordinary ones', () => {
    const r = new Redactor();
    r.addEnvValue('DB_PASSWORD', 'hunter22');
    r.addEnvValue('UPSTREAM', 'q8Zk2mW9xT4vB7nR1');
    r.addEnvValue('REGION', 'us-east-1');
    r.addEnvValue('STAGE', 'production');
    expect(r.redact('hunter22 q8Zk2mW9xT4vB7nR1 us-east-1 production')).toBe(`${REDACTED} ${REDACTED} us-east-1 production`);
  });

  test.each([
    ['URL userinfo', 'GET https://bob:hunter2@db.example.com/x', 'hunter2'],
    ['presigned S3 URL', 'https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIDEXAMPLE%2F2026&X-Amz-Signature=deadbeef1234', 'deadbeef1234'],
    ['token query parameter', 'https://api.example.com/v1?token=abc123def&x=1', 'abc123def'],
    ['KEY=value', 'env: API_TOKEN=tok_9f8e7d6c then', 'tok_9f8e7d6c'],
    ['JSON "password"', '{"db_password":"s3cr3t!x","user":"u"}', 's3cr3t!x'],
    ['escaped JSON in a log line', JSON.stringify({ msg: '{"Secret":"zz-top-1"}' }), 'zz-top-1'],
    ['Bearer', 'authorization failed for Bearer eyJhbGciOi.abc.def', 'eyJhbGciOi.abc.def'],
    ['AWS access key id', 'key AKIAIOSFODNN7EXAMPLE used', 'AKIAIOSFODNN7EXAMPLE'],
    ['Slack webhook', 'posting to https://hooks.slack.com/services/T000/B000/XXXXSECRET', 'T000/B000/XXXXSECRET'],
    ['Slack token', 'token xoxb-123456789012-abcdefABCDEF', 'xoxb-123456789012-abcdefABCDEF'],
    ['GitHub token', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789'],
    ['JWT', 'id eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV', 'SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV'],
    ['PEM key', '-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----', 'MIIEow'],
    ['Lambda environment block', '{"Environment":{"Variables":{"X":"plain-looking"}},"State":"Failed"}', 'plain-looking'],
  ])('credential pattern: %s', (_, text, secret) => {
    const out = new Redactor().redact(text);
    expect(out).not.toContain(secret);
    expect(out).toContain(REDACTED);
  });

  test('ordinary text stays as it is', () => {
    const text = 'us-east-1: 1 probe(s) ok, contract ok; env values changed (by hash): DB_PASSWORD 1a2b3c->4d5e6f; canary 10 % at 2';
    expect(new Redactor().redact(text)).toBe(text);
  });

  test('redactDeep rewrites strings only and keeps shapes', () => {
    const r = new Redactor();
    r.addSecret('very-secret-1');
    const out = r.redactDeep({ a: ['x very-secret-1', 3, null], b: { c: true, d: 'very-secret-1' } });
    expect(out).toEqual({ a: [`x ${REDACTED}`, 3, null], b: { c: true, d: REDACTED } });
  });

  test('registerSecretEnv: secret-looking names and the allow-listed ones', () => {
    const r = new Redactor();
    r.registerSecretEnv(
      {
        TEMPORAL_API_KEY: 'tk-1234567',
        ROLLGATE_WEBHOOK_OPS: 'https://hooks.example.com/abc',
        NPM_CFG: 'npm-value-1',
        HOME: '/home/rollgate',
      },
      ['NPM_CFG'],
    );
    expect(r.redact('tk-1234567 https://hooks.example.com/abc npm-value-1 /home/rollgate')).toBe(
      `${REDACTED} ${REDACTED} ${REDACTED} /home/rollgate`,
    );
  });

  test('bodyExcerpt: one line, no control characters, redacted, bounded', () => {
    const out = bodyExcerpt(`line1\n\u0007line2 password=hunter22 ${'x'.repeat(500)}`, 60);
    expect(out.startsWith('line1 line2 password=[redacted] x')).toBe(true);
    expect(out.length).toBeLessThanOrEqual(61);
  });

  test('the logger redacts every line', () => {
    const lines: string[] = [];
    secrets.addSecret('logged-secret-42');
    const log = new JsonLogger({ write: (l) => void lines.push(l) });
    log.warn('Activity failed: logged-secret-42', { error: new Error('boom password=hunter22'), nested: { v: 'logged-secret-42' } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain('logged-secret-42');
    expect(lines[0]).not.toContain('hunter22');
    expect(() => JSON.parse(lines[0])).not.toThrow();
  });
});

describe('URL policy', () => {
  test.each([
    ['169.254.169.254', 'metadata address'],
    ['169.254.10.1', 'link-local address'],
    ['fd00:ec2::254', 'metadata address'],
    ['[fd00:ec2:0:0:0:0:0:254]', 'metadata address'],
    ['fe80::1', 'link-local address'],
    ['::ffff:169.254.169.254', 'metadata address'],
    ['::ffff:a9fe:a9fe', 'metadata address'],
    ['64:ff9b::a9fe:a9fe', 'metadata address'],
  ])('%s is refused (%s)', (addr, why) => expect(refusedAddress(addr)).toBe(why));

  test.each(['127.0.0.1', '10.0.0.1', '::1', '2001:db8::1', '8.8.8.8'])('%s is not a refused address', (addr) =>
    expect(refusedAddress(addr)).toBeUndefined(),
  );

  test('metadata hosts and link-local literals are refused even by "*"', () => {
    const any = UrlPolicy.parse('*');
    for (const u of [
      'http://169.254.169.254/latest/meta-data/',
      'http://metadata.google.internal/computeMetadata/v1/',
      'http://metadata/computeMetadata/v1/',
      'http://[fd00:ec2::254]/latest/meta-data/',
      'http://2852039166/', // 169.254.169.254 as one number: the URL parser normalizes it
      'http://0xa9.0xfe.0xa9.0xfe/',
    ]) {
      const c = any.check(u);
      expect(c.ok).toBe(false);
      expect(!c.ok && c.reason).toMatch(/always refused/);
    }
    expect(hardRefusal(new URL('https://example.com/'))).toBeUndefined();
  });

  test('allow-list syntax: URL prefixes at a path boundary, https host patterns, loopback', () => {
    const p = UrlPolicy.parse('https://hooks.slack.com/services/, *.example.com, prom.internal:9090, http://127.0.0.1:9090/api, loopback');
    const ok = (u: string) => p.check(u).ok;
    expect(ok('https://hooks.slack.com/services/T/B/X')).toBe(true);
    expect(ok('https://hooks.slack.com/other')).toBe(false);
    expect(ok('http://hooks.slack.com/services/T')).toBe(false); // scheme is part of a prefix
    expect(ok('https://hooks.slack.com.evil.net/services/T')).toBe(false);
    expect(ok('https://a.example.com/x')).toBe(true);
    expect(ok('https://example.com/x')).toBe(false); // *. is subdomains only
    expect(ok('http://a.example.com/x')).toBe(false); // host patterns are https only
    expect(ok('https://a.example.com:8443/x')).toBe(false);
    expect(ok('https://prom.internal:9090/api/v1/query')).toBe(true);
    expect(ok('http://localhost:1234/hook')).toBe(true);
    const onlyApi = UrlPolicy.parse('http://10.0.0.5:9090/api');
    expect(onlyApi.check('http://10.0.0.5:9090/api/v1/query').ok).toBe(true);
    expect(onlyApi.check('http://10.0.0.5:9090/apix').ok).toBe(false);
    expect(onlyApi.allowsLoopback).toBe(false);
  });

  test('bad entries are refused naming the variable; unset means nothing in production, loopback embedded', () => {
    expect(() => UrlPolicy.parse('ftp://x/')).toThrow(/ROLLGATE_ALLOWED_URLS: "ftp:\/\/x\/" must be an http\(s\) URL/);
    expect(() => UrlPolicy.parse('https://u:p@x/')).toThrow(/no user, query or fragment/);
    expect(() => UrlPolicy.parse('not a host')).toThrow(/is not a host/);
    const prod = UrlPolicy.fromEnv({});
    const c = prod.check('https://hooks.slack.com/services/T');
    expect(!c.ok && c.reason).toMatch(/not allowed by ROLLGATE_ALLOWED_URLS \(unset: nothing allowed\)/);
    expect(UrlPolicy.embeddedDefault().check('http://127.0.0.1:9/x').ok).toBe(true);
    expect(UrlPolicy.embeddedDefault().check('https://example.com/').ok).toBe(false);
  });
});

describe('outbound requests', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url === '/redirect-metadata') {
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/?token=abc' });
        return res.end();
      }
      if (req.url === '/big') return res.end('y'.repeat(100_000));
      res.end('0.01');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const loopback = UrlPolicy.parse('loopback');

  test('a redirect is not followed: the refusal names where it pointed (no query)', async () => {
    const err = await outboundRequest(`${base}/redirect-metadata`, { timeoutMs: 5000, policy: loopback }).catch((e) => e);
    expect(err).toBeInstanceOf(OutboundRefused);
    expect(err.message).toMatch(
      /answered a redirect \(HTTP 302\) to http:\/\/169\.254\.169\.254\/latest\/meta-data\/iam\/security-credentials\/\?…: redirects are not followed/,
    );
    expect(err.message).not.toContain('token=abc');
  });

  test('a host name that resolves to the metadata address is refused before any connection', async () => {
    let connected = false;
    server.once('connection', () => (connected = true));
    const port = (server.address() as { port: number }).port;
    const err = await outboundRequest(`http://innocent.test:${port}/x`, {
      timeoutMs: 5000,
      policy: UrlPolicy.parse('*'),
      lookup: (_h, cb) => cb(null, [{ address: '169.254.169.254', family: 4 }]),
    }).catch((e) => e);
    expect(err).toBeInstanceOf(OutboundRefused);
    expect(err.message).toMatch(/innocent\.test: it resolves to 169\.254\.169\.254, a metadata address: always refused/);
    expect(connected).toBe(false);
  });

  test('a host name that resolves to loopback is refused unless the list allows loopback', async () => {
    const port = (server.address() as { port: number }).port;
    const lookup = (_h: string, cb: (e: null, a: { address: string; family: number }[]) => void) =>
      cb(null, [{ address: '127.0.0.1', family: 4 }]);
    const refused = await outboundRequest(`https://sneaky.example.com:${port}/x`, {
      timeoutMs: 5000,
      policy: UrlPolicy.parse(`sneaky.example.com:${port}`),
      lookup,
    }).catch((e) => e);
    expect(refused).toBeInstanceOf(OutboundRefused);
    expect(refused.message).toMatch(/resolves to loopback 127\.0\.0\.1/);
    const ok = await outboundRequest(`http://sneaky.test:${port}/x`, { timeoutMs: 5000, policy: UrlPolicy.parse('*'), lookup });
    expect(ok.text).toBe('0.01');
  });

  test('a URL off the allow-list is refused; the body is bounded', async () => {
    await expect(outboundRequest(`${base}/x`, { timeoutMs: 5000, policy: UrlPolicy.fromEnv({}) })).rejects.toThrow(
      /not allowed by ROLLGATE_ALLOWED_URLS/,
    );
    const big = await outboundRequest(`${base}/big`, { timeoutMs: 5000, policy: loopback, maxBodyBytes: 1000 });
    expect(big.text).toHaveLength(1000);
  });
});
