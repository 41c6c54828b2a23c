/** Malformed specs are refused with the path of every bad field, each problem once (no server: the CLI runs are in spec-validation.test.ts). */
import { MAX_SPEC_BYTES, SpecError, validateSpec, parseSpecText } from '../src/spec/validate';
import { base, cases, type Spec } from './support/spec-cases';

describe('each malformed spec is refused with its field path', () => {
  test.each(cases)('%s', (_name, mutate, path) => {
    const spec = base() as Spec;
    mutate(spec);
    let err: unknown;
    try {
      validateSpec(spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SpecError);
    const paths = (err as SpecError).problems.map((p) => p.path);
    expect(paths).toContain(path);
  });
});

test('the valid base spec passes and gets defaults', () => {
  const spec = validateSpec(base());
  expect(spec.schema_rev).toBe('7');
  expect(spec.rollback).toMatchObject({ max_error_rate_increase_pp: 2, on_no_data: 'extend-then-fail', max_extensions: 2 });
});

test('all problems come in one message', () => {
  const s = base() as Spec;
  s.canary.weight = 90;
  s.targets[1].region = 'nowhere';
  s.waves[0].steps = [10];
  const err = (() => {
    try {
      validateSpec(s, 'spec.yaml');
    } catch (e) {
      return e as SpecError;
    }
  })()!;
  expect(err.message).toMatch(/^spec.yaml is invalid:/);
  for (const p of ['canary.weight', 'targets[1].region', 'waves[0].steps']) expect(err.message).toContain(`  - ${p}: `);
});

test('the webhook is a worker variable (notify.webhook_env); a URL in the spec is refused, pointing to it', () => {
  expect(validateSpec({ ...base(), notify: { webhook_env: 'ROLLGATE_WEBHOOK_SLACK' } }).notify).toEqual({
    webhook_env: 'ROLLGATE_WEBHOOK_SLACK',
    escalate_after: 3,
  });
  expect(() => validateSpec({ ...base(), notify: { webhook: 'https://hooks.slack.com/services/T/B/X' } })).toThrow(
    /notify\.webhook: a webhook URL in the spec would be stored in the workflow history .* give its name as notify\.webhook_env/,
  );
});

test('an oversized spec is refused with its size, the limit and its largest fields', () => {
  const big = { ...base(), probes: [{ name: 'big', payload: { blob: 'x'.repeat(5 * 1024 * 1024) } }] };
  expect(() => validateSpec(big, 'big.json')).toThrow(
    /\(root\): spec is 5\.0 MiB as JSON, over the limit of 256 KiB .*largest fields: probes 5\.0 MiB/,
  );
  // Just under the limit passes: the limit is on the serialized (normalized) spec.
  const pad = MAX_SPEC_BYTES - Buffer.byteLength(JSON.stringify(validateSpec(base())));
  const under = { ...base(), probes: [{ name: 'pad', payload: 'x'.repeat(pad - 200) }] };
  expect(() => validateSpec(under)).not.toThrow();
});

test('YAML syntax errors and non-mappings are refused', () => {
  expect(() => parseSpecText('service: [unclosed')).toThrow(/\(file\): not valid YAML\/JSON/);
  expect(() => parseSpecText('- a\n- b')).toThrow(/\(root\): must be a mapping/);
});

test('each problem is reported once, also where every branch of a union reports it (schema_rev: number or string)', () => {
  const s = base() as Partial<Spec>;
  delete s.schema_rev;
  delete s.canary;
  const err = (() => {
    try {
      validateSpec(s);
    } catch (e) {
      return e as SpecError;
    }
  })()!;
  const lines = err.problems.map((p) => `${p.path}: ${p.message}`);
  expect(lines).toEqual(expect.arrayContaining(['schema_rev: is required', 'canary: is required']));
  expect(lines).toEqual([...new Set(lines)]);
  expect(err.message.match(/ - schema_rev: /g)).toHaveLength(1);
});
