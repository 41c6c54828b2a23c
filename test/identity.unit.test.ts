/**
 * The identity verifier on its own: configuration from the environment (a half-configured one is
 * refused, naming the variable) and every refusal reason, against a real loopback JWKS server and
 * tokens signed here.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createIdentityVerifier, IdentityRefusedError, verifierConfigFromEnv, type IdentityVerifier } from '../src/identity/verifier';
import { issuerEnv, startTestIssuer, type TestIssuer } from './support/oidc';
import { SpecError, validateSpec } from '../src/spec/validate';
import { formatStatus } from '../src/cli/format';
import type { RolloutStatus } from '../src/contract';

let issuer: TestIssuer;
let verifier: IdentityVerifier;
beforeAll(async () => {
  issuer = await startTestIssuer();
  verifier = createIdentityVerifier(verifierConfigFromEnv(issuerEnv(issuer))!);
});
afterAll(async () => issuer?.close());

async function reason(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(IdentityRefusedError);
    return (err as Error).message;
  }
  throw new Error('expected a refusal');
}

describe('configuration', () => {
  test('no ROLLGATE_OIDC_* variable: no verifier', () => {
    expect(verifierConfigFromEnv({})).toBeUndefined();
  });
  test('a half-configured verifier is refused, naming the missing variable', () => {
    expect(() => verifierConfigFromEnv({ ROLLGATE_OIDC_ISSUER: 'https://idp/' })).toThrow(/ROLLGATE_OIDC_AUDIENCE is not set/);
    expect(() => verifierConfigFromEnv({ ROLLGATE_OIDC_AUDIENCE: 'rollgate' })).toThrow(/ROLLGATE_OIDC_ISSUER is not set/);
    expect(() => verifierConfigFromEnv({ ROLLGATE_OIDC_ISSUER: 'https://idp/', ROLLGATE_OIDC_AUDIENCE: 'r' })).toThrow(
      /ROLLGATE_OIDC_JWKS_URL is not set \(nor ROLLGATE_OIDC_JWKS_FILE\)/,
    );
    expect(() => verifierConfigFromEnv({ ROLLGATE_OIDC_NAME_CLAIM: 'email' })).toThrow(/ROLLGATE_OIDC_ISSUER is not set/);
    expect(() =>
      verifierConfigFromEnv({ ROLLGATE_OIDC_ISSUER: 'i', ROLLGATE_OIDC_AUDIENCE: 'a', ROLLGATE_OIDC_JWKS_URL: 'http://idp.example/jwks' }),
    ).toThrow(/ROLLGATE_OIDC_JWKS_URL must be https:\/\//);
    expect(() => verifierConfigFromEnv({ ...issuerEnv(issuer), ROLLGATE_OIDC_MAX_TOKEN_AGE: 'soon' })).toThrow(
      /ROLLGATE_OIDC_MAX_TOKEN_AGE is not a duration/,
    );
  });
  test('defaults: name from sub, groups from groups, tokens at most an hour old', () => {
    const c = verifierConfigFromEnv({ ROLLGATE_OIDC_ISSUER: 'i', ROLLGATE_OIDC_AUDIENCE: 'a', ROLLGATE_OIDC_JWKS_FILE: '/x' })!;
    expect(c).toMatchObject({ nameClaim: 'sub', groupsClaim: 'groups', maxTokenAgeMs: 3_600_000 });
  });
});

describe('verification', () => {
  test('a valid token gives its name, subject and groups', async () => {
    const id = await verifier.verify(await issuer.token('bob', { groups: ['release-managers', 'dev'] }));
    expect(id).toEqual({ name: 'bob', subject: 'sub-bob', groups: ['release-managers', 'dev'] });
    expect(issuer.requests.some((r) => r.url === '/jwks.json')).toBe(true);
  });
  test('each bad token is refused with its reason', async () => {
    expect(await reason(verifier.verify(await issuer.forge('bob')))).toMatch(/signature does not verify/);
    expect(await reason(verifier.verify(await issuer.token('bob', { expiresIn: -120 })))).toMatch(/token has expired/);
    expect(await reason(verifier.verify(await issuer.token('bob', { audience: 'someone-else' })))).toMatch(
      /another audience \(expected rollgate\)/,
    );
    expect(await reason(verifier.verify(await issuer.token('bob', { issuer: 'https://evil.example/' })))).toMatch(
      /another issuer \(expected http:\/\/127\.0\.0\.1:\d+\/\)/,
    );
    expect(await reason(verifier.verify(await issuer.token('bob', { issuedAgo: 2 * 3600, expiresIn: 3600 })))).toMatch(
      /issued too long ago .*at most 60 min/,
    );
    expect(await reason(verifier.verify('not.a.jwt'))).toMatch(/not a valid JWT/);
    expect(await reason(verifier.verify(''))).toMatch(/no token was sent/);
  });
  test('a token without the name claim is refused, naming the claim', async () => {
    const v = createIdentityVerifier({ ...verifierConfigFromEnv(issuerEnv(issuer))!, nameClaim: 'email' });
    expect(await reason(v.verify(await issuer.token('bob')))).toMatch(/no email claim .*ROLLGATE_OIDC_NAME_CLAIM/);
  });
  test('keys from a JWKS file; groups as a space-separated string', async () => {
    const res = await fetch(issuer.jwksUrl);
    const dir = mkdtempSync(join(tmpdir(), 'rollgate-jwks-'));
    const file = join(dir, 'jwks.json');
    writeFileSync(file, await res.text());
    const env = { ...issuerEnv(issuer), ROLLGATE_OIDC_JWKS_URL: '', ROLLGATE_OIDC_JWKS_FILE: file };
    const v = createIdentityVerifier(verifierConfigFromEnv(env)!);
    const id = await v.verify(await issuer.token('dave', { extra: { groups: 'ops release-managers' } }));
    expect(id.groups).toEqual(['ops', 'release-managers']);
    expect(await reason(v.verify(await issuer.forge('dave')))).toMatch(/signature does not verify/);
  });
});

describe('spec and status', () => {
  const base = {
    service: 'svc',
    release: 'r1',
    schema_rev: '1',
    artifact: { image: `europe-docker.pkg.dev/my-project/r/app@sha256:${'a'.repeat(64)}` },
    targets: [{ name: 'run1', provider: 'cloud-run', project: 'my-project', region: 'europe-west1', service: 'svc' }],
    canary: { targets: ['run1'], weight: 10, bake: '1m' },
  };
  const problems = (over: object): string => {
    try {
      validateSpec({ ...base, ...over });
    } catch (err) {
      expect(err).toBeInstanceOf(SpecError);
      return (err as Error).message;
    }
    return '';
  };
  test('group: approvers and min_approvals are validated with their field', () => {
    expect(problems({ approvers: ['alice', 'group:release'], min_approvals: 3 })).toBe('');
    expect(problems({ approvers: ['alice', 'bob'], min_approvals: 3 })).toMatch(
      /min_approvals.*needs 3 distinct approvers, but approvers names 2/,
    );
    expect(problems({ approvers: ['group:'] })).toMatch(/approvers\[0\]: group: needs a group name/);
    expect(problems({ approvers: ['alice'], min_approvals: 0 })).toMatch(/min_approvals/);
    expect(validateSpec(base).min_approvals).toBe(1);
  });
  test('status text says who started it and whether that was verified', () => {
    const s = {
      id: 'rollout-svc',
      service: 'svc',
      release: 'r1',
      state: 'running',
      stage: 'canary',
      detail: 'x',
      targets: [],
      history: [],
      approvals: [],
    };
    expect(formatStatus({ ...s, starter: { name: 'carol', verified: false } } as unknown as RolloutStatus)).toContain(
      'started by carol (unverified)',
    );
    expect(formatStatus({ ...s, starter: { name: 'alice', verified: true, subject: 'u-1' } } as unknown as RolloutStatus)).toContain(
      'started by alice (verified, sub u-1)',
    );
  });
});
