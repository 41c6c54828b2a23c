/** Malformed-spec cases shared by the pure validation tests and the CLI tests that run them against a server. */
export const base = () => ({
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

export type Spec = ReturnType<typeof base> & Record<string, any>;
const driftCheck = {
  name: 'drift',
  url: 'http://rag/drift?rev={{revision}}',
  json_path: 'drift',
  threshold: 0.03,
  direction: 'higher-is-worse',
};
export const cases: [string, (s: Spec) => void, string][] = [
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
