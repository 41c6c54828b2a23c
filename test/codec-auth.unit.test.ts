/**
 * Who may use the codec server (issue 10, item 7): a user's JWT verified with the worker's verifier
 * (Authorization: Bearer, or the rollgate_codec_token cookie a browser sends), the static token for
 * the `temporal` CLI, and CORS that never hands a browser's credentials to an origin it was not
 * configured with. Real HTTP against a loopback JWKS server.
 */
import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/common';
import { AesGcmPayloadCodec } from '../src/temporal/codec';
import {
  CODEC_TOKEN_COOKIE,
  codecServerOptionsFromEnv,
  payloadToJson,
  startCodecServer,
  type CodecServer,
} from '../src/temporal/codec-server';
import { createIdentityVerifier, verifierConfigFromEnv } from '../src/identity/verifier';
import { issuerEnv, startTestIssuer, type TestIssuer } from './support/oidc';

const UI = 'http://127.0.0.1:8233';
const STATIC = 'static-codec-token';
let idp: TestIssuer;
let server: CodecServer;
let wildcard: CodecServer;
const codec = new AesGcmPayloadCodec([{ id: 'auth', key: randomBytes(32) }]);
const body = { payloads: [payloadToJson(defaultPayloadConverter.toPayload({ secret: 'decoded-value' }))] };

beforeAll(async () => {
  idp = await startTestIssuer();
  const verifier = createIdentityVerifier(verifierConfigFromEnv(issuerEnv(idp))!);
  server = await startCodecServer({ codec, verifier, token: STATIC, corsOrigins: [UI] });
  wildcard = await startCodecServer({ codec, verifier, corsOrigins: ['*'] });
});
afterAll(async () => {
  await server?.close();
  await wildcard?.close();
  await idp?.close();
});

const encode = (s: CodecServer, headers: Record<string, string>) =>
  fetch(`${s.url}/encode`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: UI, ...headers },
    body: JSON.stringify(body),
  });

test('a verified JWT, in the Authorization header or the cookie, may encode; the static token too', async () => {
  const token = await idp.token('erin');
  const variants: [string, Record<string, string>][] = [
    ['jwt in the header', { authorization: `Bearer ${token}` }],
    ['jwt in the cookie', { cookie: `other=1; ${CODEC_TOKEN_COOKIE}=${token}` }],
    ['static token', { authorization: `Bearer ${STATIC}` }],
  ];
  for (const [what, headers] of variants) {
    const res = await encode(server, headers);
    expect({ what, status: res.status }).toEqual({ what, status: 200 });
  }
});

test('a bad or missing credential gets 401 with the reason and nothing decoded', async () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{}, /no credential/],
    [{ authorization: `Bearer ${await idp.token('erin', { expiresIn: -120 })}` }, /token refused: the token has expired/],
    [{ authorization: `Bearer ${await idp.forge('erin')}` }, /signature does not verify/],
    [{ cookie: `${CODEC_TOKEN_COOKIE}=${await idp.token('erin', { audience: 'another-app' })}` }, /another audience/],
    [{ authorization: `Bearer ${await idp.token('erin', { issuer: 'https://evil.example/' })}` }, /another issuer/],
    // What the UI sends with passAccessToken but no login of its own.
    [{ authorization: 'Bearer undefined' }, /no credential/],
  ];
  for (const [headers, reason] of cases) {
    const res = await encode(server, headers);
    const text = await res.text();
    expect({ status: res.status, text }).toEqual({ status: 401, text: expect.stringMatching(reason) });
    expect(text).not.toContain('decoded-value');
  }
});

test('CORS: a configured origin gets credentials; "*" answers any origin but never with credentials', async () => {
  const preflight = (s: CodecServer, origin: string) =>
    fetch(`${s.url}/decode`, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-namespace' },
    });
  const ok = await preflight(server, UI);
  expect(ok.headers.get('access-control-allow-origin')).toBe(UI);
  expect(ok.headers.get('access-control-allow-credentials')).toBe('true');
  const other = await preflight(server, 'https://evil.example');
  expect(other.headers.get('access-control-allow-origin')).toBeNull();
  expect(other.headers.get('access-control-allow-credentials')).toBeNull();
  for (const origin of ['https://evil.example', UI]) {
    const res = await preflight(wildcard, origin);
    expect({
      origin,
      acao: res.headers.get('access-control-allow-origin'),
      acac: res.headers.get('access-control-allow-credentials'),
    }).toEqual({
      origin,
      acao: '*',
      acac: null,
    });
  }
});

test('configuration: a verifier alone is enough; neither, or a half-configured verifier, is refused naming the variable', () => {
  const keys = { ROLLGATE_CODEC_KEY: randomBytes(32).toString('base64'), ROLLGATE_CODEC_KEY_ID: 'k1' };
  expect(codecServerOptionsFromEnv({ ...keys, ...issuerEnv(idp) }).verifier).toBeDefined();
  expect(() => codecServerOptionsFromEnv(keys)).toThrow(/needs ROLLGATE_CODEC_TOKEN .* or an identity verifier/);
  expect(() => codecServerOptionsFromEnv({ ...keys, ROLLGATE_CODEC_TOKEN: 't', ROLLGATE_OIDC_ISSUER: idp.issuer })).toThrow(
    /ROLLGATE_OIDC_AUDIENCE is not set/,
  );
});
