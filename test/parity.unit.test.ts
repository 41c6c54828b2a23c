/** The pure parity comparison (src/providers/parity.ts) and Cloud Run's normalization, without servers. */
import {
  compareParity,
  lambdaLayerName,
  MAX_PARITY_MESSAGE,
  lambdaSecretRef,
  parityPairs,
  parityReport,
  type ParityConfig,
} from '../src/providers/parity';
import { revisionParityConfig } from '../src/providers/cloud-run';
import { saltedHash } from '../src/providers/fingerprint';
import type { TargetSpec } from '../src/spec/schema';
import { validateSpec } from '../src/spec/validate';

const lambda = (over: Partial<ParityConfig['settings']> = {}, env: Record<string, string> = {}, secretRefs = {}): ParityConfig => ({
  provider: 'aws-lambda',
  settings: { runtime: 'nodejs20.x', architecture: 'x86_64', memory: '512', timeout: '3', layers: 'none', vpc: 'none', ...over },
  env: { LOG_LEVEL: 'h-info', ...env },
  secretRefs,
});

test('identical configurations: no difference, no message', () => {
  const r = parityReport('eu-west-1', 'us-east-1', lambda(), lambda());
  expect(r.differences).toEqual([]);
  expect(r.message).toBe('');
});

test('settings, missing and extra env keys, changed hashes and secret references are each named', () => {
  const canary = lambda({}, { FEATURE_X: 'h-on' }, { DB: 'secretsmanager:db-pass' });
  const target = lambda({ memory: '1024', timeout: '30' }, { LOG_LEVEL: 'h-debug', EXTRA: 'h-1' }, { DB: 'secretsmanager:db-old' });
  const r = parityReport('eu-west-1', 'us-east-1', canary, target);
  expect(r.differences.map((d) => d.field)).toEqual(['memory', 'timeout', 'env EXTRA', 'env FEATURE_X', 'env LOG_LEVEL', 'secret DB']);
  expect(r.message).toBe(
    'eu-west-1 differs from canary us-east-1: memory 1024 vs 512; timeout 30 vs 3; env keys missing: FEATURE_X; ' +
      'env keys not on the canary: EXTRA; env values differ (salted hash): LOG_LEVEL h-debug vs h-info; ' +
      'secret references differ: DB secretsmanager:db-old vs secretsmanager:db-pass',
  );
});

test('release contract keys differ by design', () => {
  expect(compareParity(lambda({}, { RELEASE_ID: 'a', SCHEMA_REV: '1' }), lambda({}, { RELEASE_ID: 'b' }))).toEqual([]);
});

test('each target is compared with the first canary target of its own provider', () => {
  const t = (name: string, provider: TargetSpec['provider']) => ({ name, provider }) as TargetSpec;
  const targets = [t('use1', 'aws-lambda'), t('euw1', 'aws-lambda'), t('cr-eu', 'cloud-run'), t('use2', 'aws-lambda')];
  const { pairs, unchecked } = parityPairs(targets, ['use1', 'use2']);
  expect(pairs.map((p) => `${p.target.name}->${p.canary.name}`)).toEqual(['euw1->use1', 'use2->use1']);
  expect(unchecked).toEqual(['cr-eu']);
});

test('Lambda secret references and layers lose region and account (they differ by design)', () => {
  expect(lambdaSecretRef('arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-pass-AbCdEf')).toBe('secretsmanager:db-pass-AbCdEf');
  expect(lambdaSecretRef('arn:aws:secretsmanager:us-east-1:210987654321:secret:db-pass-AbCdEf')).toBe('secretsmanager:db-pass-AbCdEf');
  expect(lambdaSecretRef('arn:aws:ssm:us-east-1:123456789012:parameter/app/db')).toBe('ssm:parameter/app/db');
  expect(lambdaSecretRef('s3cret-value')).toBeUndefined();
  expect(lambdaLayerName('arn:aws:lambda:eu-west-1:123456789012:layer:otel:7')).toBe('otel:7');
});

test('Cloud Run: defaults fill unset fields, sidecar env is prefixed, secrets by name without project, values hashed', () => {
  const rev = {
    containers: [
      { name: 'sidecar', env: [{ name: 'MODE', value: 'x' }] },
      {
        name: 'app',
        ports: [{ containerPort: 8080 }],
        resources: { limits: { cpu: '2' } },
        env: [
          { name: 'RELEASE_ID', value: 'r1' },
          { name: 'TOKEN', value: 'plain-secret' },
          { name: 'DB', valueSource: { secretKeyRef: { secret: 'projects/123/secrets/db-password', version: '3' } } },
        ],
      },
    ],
    maxInstanceRequestConcurrency: 0,
    scaling: { minInstanceCount: 1 },
  };
  const cfg = revisionParityConfig(rev, 'INGRESS_TRAFFIC_INTERNAL_ONLY', 'k');
  expect(cfg.settings).toEqual({
    cpu: '2',
    memory: '512Mi',
    concurrency: '80',
    'min instances': '1',
    'max instances': '100',
    ingress: 'internal_only',
  });
  expect(cfg.env).toEqual({ 'sidecar/MODE': saltedHash('k', 'sidecar/MODE', 'x'), TOKEN: saltedHash('k', 'TOKEN', 'plain-secret') });
  expect(JSON.stringify(cfg)).not.toContain('plain-secret');
  expect(cfg.secretRefs).toEqual({ DB: 'db-password:3' });
});

test('a message over hundreds of env keys is cut, and says how many fields differ', () => {
  const env = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`KEY_${i}`, `h-${i}`]));
  const r = parityReport('eu-west-1', 'us-east-1', lambda({}, env), lambda());
  expect(r.differences).toHaveLength(300);
  expect(r.message.length).toBeLessThan(MAX_PARITY_MESSAGE + 60);
  expect(r.message).toMatch(/… \(300 differing fields in all\)$/);
});

test('a bad parity mode is refused with the field named', () => {
  const spec = {
    service: 'a',
    release: 'r',
    schema_rev: 1,
    artifact: { image: `x@sha256:${'a'.repeat(64)}` },
    targets: [{ name: 'c', provider: 'cloud-run', project: 'proj-123', region: 'europe-west1', service: 'a' }],
    canary: { targets: ['c'], weight: 10, bake: '1s' },
  };
  expect(validateSpec(spec).parity).toBe('warn');
  expect(() => validateSpec({ ...spec, parity: 'strict' })).toThrow(/parity: Invalid enum value. Expected 'fail' \| 'warn'/);
});
