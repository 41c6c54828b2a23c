/**
 * Malformed specs are refused with the path of every bad field, before anything starts and without
 * a single provider call (the CLI `start` is run against a live server and a counting proxy).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_SPEC_BYTES, SpecError, validateSpec, parseSpecText } from '../src/spec/validate';
import { main } from '../src/cli/main';
import { RolloutRefusedError, startRollout } from '../src/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import { rolloutWorkflowId } from '../src/contract';
import { createHarness, lambdaSpec, type Harness } from './support/harness';

const base = () => ({
  service: 'checkout',
  release: 'r42',
  schema_rev: 7,
  artifact: { file: './fn.zip' },
  targets: [
    { name: 'use1', provider: 'aws-lambda', region: 'us-east-1', function: 'checkout', alias: 'live' },
    { name: 'euw1', provider: 'aws-lambda', region: 'eu-west-1', function: 'checkout', alias: 'live' },
  ],
  canary: { targets: ['use1'], weight: 10, bake: '5 minutes' },
  waves: [{ name: 'eu', targets: ['euw1'], steps: [10, 50, 100], bake: '10 minutes', approval: true }],
  approvers: ['alice'],
});

type Spec = ReturnType<typeof base> & Record<string, any>;
const driftCheck = {
  name: 'drift',
  url: 'http://rag/drift?rev={{revision}}',
  json_path: 'drift',
  threshold: 0.03,
  direction: 'higher-is-worse',
};
const cases: [string, (s: Spec) => void, string][] = [
  ['missing service', (s) => delete (s as any).service, 'service'],
  ['service with capitals', (s) => (s.service = 'Checkout'), 'service'],
  ['release with spaces', (s) => (s.release = 'r 42'), 'release'],
  ['schema_rev missing', (s) => delete (s as any).schema_rev, 'schema_rev'],
  ['schema_rev negative', (s) => (s.schema_rev = -1), 'schema_rev'],
  ['no artifact source', (s) => (s.artifact = {} as any), 'artifact'],
  ['build and file', (s) => (s.artifact = { file: 'a.zip', build: { command: 'make', output: 'a.zip' } } as any), 'artifact.file'],
  ['image not pinned', (s) => (s.artifact = { file: 'a.zip', image: 'gcr.io/x/app:latest' } as any), 'artifact.image'],
  ['bad sha256', (s) => (s.artifact = { file: 'a.zip', sha256: 'abc' } as any), 'artifact.sha256'],
  ['empty build command', (s) => (s.artifact = { build: { command: '', output: 'a.zip' } } as any), 'artifact.build.command'],
  ['unknown top-level field', (s) => (s.canaries = {}), '(root)'],
  ['no targets', (s) => (s.targets = []), 'targets'],
  ['unknown provider', (s) => (s.targets[0].provider = 'azure-functions'), 'targets[0].provider'],
  ['bad region', (s) => (s.targets[1].region = 'europe'), 'targets[1].region'],
  ['bad function name', (s) => (s.targets[0].function = 'check out!'), 'targets[0].function'],
  ['numeric alias', (s) => (s.targets[0].alias = '3'), 'targets[0].alias'],
  ['duplicate target', (s) => (s.targets[1].name = 'use1'), 'targets[1].name'],
  [
    'cloud-run target without image',
    (s) => s.targets.push({ name: 'gcp', provider: 'cloud-run', project: 'my-proj-1', region: 'europe-west1', service: 'checkout' } as any),
    'targets[2].provider',
  ],
  ['canary unknown target', (s) => (s.canary.targets = ['nowhere']), 'canary.targets[0]'],
  ['canary weight over 50', (s) => (s.canary.weight = 60), 'canary.weight'],
  ['canary weight zero', (s) => (s.canary.weight = 0), 'canary.weight'],
  ['canary bake not a duration', (s) => (s.canary.bake = 'soon'), 'canary.bake'],
  ['wave steps decreasing', (s) => (s.waves[0].steps = [50, 10, 100]), 'waves[0].steps'],
  ['wave last step not 100', (s) => (s.waves[0].steps = [10, 50]), 'waves[0].steps'],
  ['wave step over 100', (s) => (s.waves[0].steps = [10, 150]), 'waves[0].steps[1]'],
  ['wave unknown target', (s) => (s.waves[0].targets = ['apse2']), 'waves[0].targets[0]'],
  [
    'target in two waves',
    (s) => s.waves.push({ name: 'eu2', targets: ['euw1'], steps: [100], bake: '1m', approval: false }),
    'waves[1].targets[0]',
  ],
  ['approval without approvers', (s) => (s.approvers = []), 'waves[0].approval'],
  ['wave bake missing', (s) => delete (s.waves[0] as any).bake, 'waves[0].bake'],
  ['rollback pp negative', (s) => (s.rollback = { max_error_rate_increase_pp: -1 }), 'rollback.max_error_rate_increase_pp'],
  ['rollback unknown no-data policy', (s) => (s.rollback = { on_no_data: 'ignore' }), 'rollback.on_no_data'],
  ['rollback interval too short', (s) => (s.rollback = { interval: '10ms' }), 'rollback.interval'],
  [
    'prometheus source without a prometheus block',
    (s) => (s.rollback = { metrics: { 'aws-lambda': { source: 'prometheus' } } }),
    'rollback.metrics.aws-lambda.prometheus',
  ],
  [
    'metric source unknown',
    (s) => (s.rollback = { metrics: { 'aws-lambda': { source: 'datadog' } } }),
    'rollback.metrics.aws-lambda.source',
  ],
  [
    'prometheus query with a misspelt placeholder',
    (s) =>
      (s.rollback = {
        metrics: {
          'aws-lambda': {
            source: 'prometheus',
            prometheus: {
              url: 'http://prom:9090',
              requests: 'sum(increase(reqs{v="{{revison}}"}[{{window}}]))',
              errors: 'sum(errs{v="{{revision}}"})',
            },
          },
        },
      }),
    'rollback.metrics.aws-lambda.prometheus.requests',
  ],
  [
    'prometheus query without the revision',
    (s) =>
      (s.rollback = {
        metrics: {
          'cloud-run': {
            source: 'prometheus',
            prometheus: { url: 'http://prom:9090', requests: 'sum(reqs)', errors: 'sum(errs{r="{{revision}}"})' },
          },
        },
      }),
    'rollback.metrics.cloud-run.prometheus.requests',
  ],
  [
    'custom check unknown target',
    (s) => (s.rollback = { custom_checks: [{ ...driftCheck, targets: ['use1', 'apse2'] }] }),
    'rollback.custom_checks[0].targets[1]',
  ],
  [
    'duplicate custom check names',
    (s) => (s.rollback = { custom_checks: [driftCheck, { ...driftCheck, url: 'http://rag/other' }] }),
    'rollback.custom_checks[1].name',
  ],
  [
    'custom check URL with a misspelt placeholder',
    (s) => (s.rollback = { custom_checks: [{ ...driftCheck, url: 'http://rag/drift?rev={{revison}}' }] }),
    'rollback.custom_checks[0].url',
  ],
  [
    'custom check without threshold',
    (s) => (s.rollback = { custom_checks: [{ ...driftCheck, threshold: undefined }] }),
    'rollback.custom_checks[0].threshold',
  ],
  [
    'statistical judge marginal above pass',
    (s) => (s.rollback = { judge: { kind: 'statistical', pass_score: 80, marginal_score: 90 } }),
    'rollback.judge.marginal_score',
  ],
  [
    'statistical metric in a group without weight',
    (s) =>
      (s.rollback = {
        judge: { kind: 'statistical', groups: { errors: 1 }, metrics: [{ name: 'lat', samples: 'latencies', group: 'latency' }] },
      }),
    'rollback.judge.metrics[0].group',
  ],
  ['unknown judge', (s) => (s.rollback = { judge: { kind: 'vibes' } }), 'rollback.judge.kind'],
  [
    'statistical latency from a source without raw latencies (the default metrics on CloudWatch)',
    (s) => (s.rollback = { judge: { kind: 'statistical' } }),
    'rollback.judge.metrics[1].samples',
  ],
  [
    'statistical series from a source without series',
    (s) =>
      (s.rollback = {
        judge: { kind: 'statistical', groups: {}, metrics: [{ name: 'p99', samples: 'series:latency_p99_ms', group: 'latency' }] },
        metrics: { 'aws-lambda': { source: 'synthetic' } },
      }),
    'rollback.judge.metrics[0].samples',
  ],
  ['notify webhook URL in the spec', (s) => (s.notify = { webhook: 'https://hooks.slack.com/services/T/B/X' }), 'notify.webhook'],
  [
    'notify webhook_env not a ROLLGATE_WEBHOOK_ variable',
    (s) => (s.notify = { webhook_env: 'AWS_SECRET_ACCESS_KEY' }),
    'notify.webhook_env',
  ],
  ['notify without webhook_env', (s) => (s.notify = { escalate_after: 2 }), 'notify.webhook_env'],
  [
    'custom check URL on the metadata address',
    (s) => (s.rollback = { custom_checks: [{ ...driftCheck, url: 'http://169.254.169.254/latest/meta-data/?rev={{revision}}' }] }),
    'rollback.custom_checks[0].url',
  ],
  [
    'prometheus URL on the GCE metadata host',
    (s) =>
      (s.rollback = {
        metrics: {
          'aws-lambda': {
            source: 'prometheus',
            prometheus: {
              url: 'http://metadata.google.internal/computeMetadata/v1/',
              requests: 'sum(x{v="{{revision}}"})',
              errors: 'sum(y{v="{{revision}}"})',
            },
          },
        },
      }),
    'rollback.metrics.aws-lambda.prometheus.url',
  ],
  [
    'custom check URL not http(s)',
    (s) => (s.rollback = { custom_checks: [{ ...driftCheck, url: 'ftp://rag/drift?rev={{revision}}' }] }),
    'rollback.custom_checks[0].url',
  ],
  [
    'prometheus URL not http(s)',
    (s) =>
      (s.rollback = {
        metrics: {
          'aws-lambda': {
            source: 'prometheus',
            prometheus: { url: 'gopher://prom:9090', requests: 'sum(r{v="{{revision}}"})', errors: 'sum(e{v="{{revision}}"})' },
          },
        },
      }),
    'rollback.metrics.aws-lambda.prometheus.url',
  ],
  ['spec over the size limit', (s) => ((s as any).probes = [{ name: 'big', payload: { blob: 'x'.repeat(5 * 1024 * 1024) } }]), '(root)'],
  ['probe path without slash', (s) => (s.probes = [{ name: 'health', path: 'healthz' }]), 'probes[0].path'],
  [
    'freeze window bad time zone',
    (s) => (s.freeze_windows = [{ name: 'fri', timezone: 'Mars/Olympus', weekly: { days: ['fri'], from: '12:00', to: '23:00' } }]),
    'freeze_windows[0].timezone',
  ],
  [
    'freeze window bad day',
    (s) => (s.freeze_windows = [{ name: 'fri', timezone: 'UTC', weekly: { days: ['friday'], from: '12:00', to: '23:00' } }]),
    'freeze_windows[0].weekly.days[0]',
  ],
  [
    'freeze window end before start',
    (s) => (s.freeze_windows = [{ name: 'bf', timezone: 'UTC', from: '2026-11-28T00:00', to: '2026-11-27T00:00' }]),
    'freeze_windows[0].to',
  ],
  ['shared dependency bad name', (s) => (s.shared_dependencies = ['Orders DB']), 'shared_dependencies[0]'],
  ['migration without current_command', (s) => (s.migration = { command: 'migrate up' }), 'migration.current_command'],
  [
    'a day-long canary bake analysed every 10 seconds (history would outgrow the server limit)',
    (s) => {
      s.canary.bake = '1 day';
      s.rollback = { interval: '10 seconds' };
    },
    'rollback.interval',
  ],
  ['revert_retry_for under 5 seconds', (s) => (s.rollback = { revert_retry_for: '1 second' }), 'rollback.revert_retry_for'],
];

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

/** The run of `rollout-SERVICE`, if one was started: describe() answers from the server's own record, or NotFound. */
async function startedRuns(h: Harness, service: string): Promise<string[]> {
  try {
    return [(await h.client.workflow.getHandle(rolloutWorkflowId(service)).describe()).runId];
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return [];
    throw err;
  }
}

describe('CLI start with a malformed spec', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness('specs');
    await h.startWorker();
  });
  afterAll(async () => h?.close());

  test('exits 2 for every malformed spec, starts nothing and calls no provider', async () => {
    const dir = join(h.workDir, 'specs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'fn.zip'), 'zip'); // the base spec's artifact.file exists: each case fails on its own problem
    process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      for (const [i, [, mutate, path]] of cases.entries()) {
        const spec = base() as Spec;
        spec.service = `bad-${i}`;
        mutate(spec);
        const file = join(dir, `bad-${i}.json`);
        writeFileSync(file, JSON.stringify(spec));
        stderr.mockClear();
        const code = await main(['start', file, '--task-queue', h.taskQueue, '--by', 'carol']);
        expect(code).toBe(2);
        expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(`- ${path}: `);
      }
    } finally {
      stderr.mockRestore();
    }
    // Describe is strongly consistent (a list query lags): no rollout of any of these services exists.
    for (const i of cases.keys())
      expect({ service: `bad-${i}`, runs: await startedRuns(h, `bad-${i}`) }).toEqual({ service: `bad-${i}`, runs: [] });
    expect(h.proxy.calls).toHaveLength(0);
  });
});

describe('file checks and size refusals before anything starts', () => {
  let h: Harness;
  let dir: string;
  beforeAll(async () => {
    h = await createHarness('specfiles');
    await h.startWorker();
    dir = join(h.workDir, 'specs');
    mkdirSync(dir, { recursive: true });
    process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
  });
  afterAll(async () => h?.close());

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
    try {
      return { code: await main(args), out, err };
    } finally {
      o.mockRestore();
      e.mockRestore();
      process.exitCode = undefined;
    }
  }

  const workflowsOf = (service: string) => startedRuns(h, service);

  test('a nonexistent artifact.file is refused by validate and start, naming the field and the path', async () => {
    const spec = { ...base(), service: 'ghost-zip', artifact: { file: './build/missing.zip' } };
    const file = join(dir, 'ghost-zip.json');
    writeFileSync(file, JSON.stringify(spec));
    const resolved = join(dir, 'build', 'missing.zip');
    const v = await cli('validate', file);
    expect(v.code).toBe(2);
    expect(v.err).toContain(`- artifact.file: file not found: ./build/missing.zip (resolved to ${resolved})`);
    const s = await cli('start', file, '--task-queue', h.taskQueue, '--by', 'carol');
    expect(s.code).toBe(2);
    expect(s.err).toContain(`- artifact.file: file not found: ./build/missing.zip (resolved to ${resolved})`);
    // A folder is not a zip either.
    writeFileSync(join(dir, 'dir-zip.json'), JSON.stringify({ ...spec, artifact: { file: '.' } }));
    expect((await cli('validate', join(dir, 'dir-zip.json'))).err).toMatch(/- artifact\.file: \. \(resolved to .*\) is not a file/);
    // Once the file is there, the same spec validates.
    mkdirSync(join(dir, 'build'), { recursive: true });
    writeFileSync(resolved, 'zip bytes');
    expect(await cli('validate', file)).toMatchObject({ code: 0, out: expect.stringContaining('ok (ghost-zip r42') });
    expect(h.proxy.calls).toHaveLength(0);
    expect(await workflowsOf('ghost-zip')).toEqual([]);
  });

  test('artifact.sha256 that does not match the file is refused before anything starts', async () => {
    writeFileSync(join(dir, 'pinned.zip'), 'the real bytes');
    const digest = createHash('sha256').update('the real bytes').digest('hex');
    const wrong = createHash('sha256').update('other bytes').digest('hex');
    const file = join(dir, 'pinned.json');
    writeFileSync(file, JSON.stringify({ ...base(), service: 'pinned', artifact: { file: 'pinned.zip', sha256: wrong } }));
    const r = await cli('start', file, '--task-queue', h.taskQueue, '--by', 'carol');
    expect(r.code).toBe(2);
    expect(r.err).toContain(
      `- artifact.sha256: pinned.zip (resolved to ${join(dir, 'pinned.zip')}) has sha256 ${digest}, the spec pins ${wrong}`,
    );
    expect(await workflowsOf('pinned')).toEqual([]);
  });

  test('a 5 MB spec is refused by validate and start with the limit', async () => {
    writeFileSync(join(dir, 'fn.zip'), 'zip');
    const file = join(dir, 'huge.json');
    writeFileSync(file, JSON.stringify({ ...base(), service: 'huge', probes: [{ name: 'big', payload: 'x'.repeat(5 * 1024 * 1024) }] }));
    for (const cmd of ['validate', 'start']) {
      const r = await cli(cmd, file, ...(cmd === 'start' ? ['--task-queue', h.taskQueue, '--by', 'carol'] : []));
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/- \(root\): spec is 5\.0 MiB as JSON, over the limit of 256 KiB/);
    }
    expect(await workflowsOf('huge')).toEqual([]);
  });

  test('a start the server refuses for its size says so (not a bare "Failed to start Workflow")', async () => {
    // A spec that skipped validation (a program building its own input): the server refuses it.
    const spec = lambdaSpec(h, 'oversized', {}, 1);
    spec.probes = [{ name: 'big', payload: 'x'.repeat(5 * 1024 * 1024), timeout: '10 seconds', attempts: 1 }];
    // 2.5 MB: over the server's 2 MB payload limit (INVALID_ARGUMENT, answered at once). Over 4 MB,
    // gRPC's message limit answers RESOURCE_EXHAUSTED, which the SDK retries for ~40 s before the same message.
    spec.probes = [{ name: 'big', payload: 'x'.repeat(2.5 * 1024 * 1024), timeout: '10 seconds', attempts: 1 }];
    const err = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue }).catch((e) => e);
    expect(err).toBeInstanceOf(RolloutRefusedError);
    expect(err.message).toMatch(
      /^the Temporal server refused to start rollout-oversized: the request is over its payload size limit \(workflow input 25\d\d KiB; server said: Blob data size exceeds limit\.?\)\. Nothing was started\. Make the spec smaller \(`rollgate validate` allows 256 KiB\)/,
    );
    expect(await workflowsOf('oversized')).toEqual([]);
  });
});
