/**
 * The spec reference is generated from the zod schema itself (docs/spec-reference.md), so it cannot
 * drift: a test regenerates it and fails when the committed file differs or a field has no description.
 */
import type { ZodTypeAny } from 'zod';
import { RolloutSpecSchema } from './schema';

export const DESCRIPTIONS: Record<string, string> = {
  service: 'Service name; one rollout per service at a time (workflow id `rollout-SERVICE`).',
  release: 'Release id, carried as RELEASE_ID by every new revision.',
  schema_rev: 'Schema revision the release needs; carried as SCHEMA_REV and checked after the migration.',
  index_hash: 'Optional index/model hash (e.g. a RAG index); carried as INDEX_HASH and checked in verify.',
  artifact: 'What is deployed: built once (build), a prebuilt zip (file), or an image by digest (image).',
  'artifact.build': 'Build once: run `command` in `cwd`, then record the sha256 of `output`.',
  'artifact.build.command':
    'Command run on the runner: an argv list, or a string split into one without a shell (quotes group words; pipes, `&&`, redirections, `$VAR`, globs and builtins are refused unless `shell: true`).',
  'artifact.build.shell': 'Run `command` (a string) with `bash -c`; never implied. Shown by `plan` and `status`.',
  'artifact.build.env':
    'Variables the command gets besides PATH, HOME, RELEASE_ID, SCHEMA_REV, INDEX_HASH and the runner’s allow-list (ROLLGATE_RUNNER_ENV_ALLOW); in the spec, so not for secrets.',
  'artifact.build.output': 'File the build produces (relative to cwd).',
  'artifact.build.cwd': 'Working folder on the runner (default: the spec file’s folder; the runner must see that path).',
  'artifact.file': 'Prebuilt zip (Lambda), relative to the spec file’s folder; `validate` and `start` refuse a path that is not a file.',
  'artifact.sha256': 'Pins artifact.file: `validate` and `start` refuse a file that differs, and the rollout re-checks it before deploy.',
  'artifact.image': 'Container image pinned by digest (Cloud Run).',
  test: 'Optional test step; a failure ends the rollout before anything is deployed.',
  'test.command': 'Command run on the runner: an argv list, or a string split without a shell (see artifact.build.command).',
  'test.shell': 'Run `command` (a string) with `bash -c`.',
  'test.env': 'Variables the command gets (see artifact.build.env).',
  'test.cwd': 'Working folder (default: the spec file’s folder).',
  migration: 'Optional migration; runs before any revision takes traffic.',
  'migration.command': 'Command run on the runner (argv list or split string); gets ROLLGATE_SCHEMA_REV in its environment.',
  'migration.current_command': 'Prints the current schema revision; must equal schema_rev afterwards.',
  'migration.shell': 'Run both commands (strings) with `bash -c`.',
  'migration.env': 'Variables both commands get (see artifact.build.env).',
  'migration.cwd': 'Working folder (default: the spec file’s folder).',
  targets: 'Where the service runs.',
  'targets[].name': 'Target name used by canary, waves and status.',
  'targets[].provider': '`aws-lambda` or `cloud-run`.',
  'targets[].region': 'AWS region (aws-lambda) or GCP region (cloud-run).',
  'targets[].function': 'aws-lambda: function name.',
  'targets[].alias': 'aws-lambda: the alias that routes traffic (weighted alias).',
  'targets[].project': 'cloud-run: GCP project id.',
  'targets[].service': 'cloud-run: service name (at most 49 characters).',
  'targets[].tag': 'cloud-run: tag of the new revision for its own URL (default `canary`).',
  probes: 'Health probes against the new revision itself (verify stage).',
  'probes[].name': 'Probe name.',
  'probes[].payload': 'aws-lambda: JSON payload for Invoke (Qualifier = new version).',
  'probes[].path': 'cloud-run: path on the revision’s tag URL.',
  'probes[].expect_contains': 'The response must contain this text.',
  'probes[].timeout': 'Per probe.',
  'probes[].attempts':
    'Tries when the probe gets no answer at all (a timeout, a refused connection), a second apart; a wrong answer (function error, HTTP status, missing text) fails verify at once.',
  canary: 'The canary stage.',
  'canary.targets': 'Targets that take the canary weight.',
  'canary.weight': 'Percent of traffic on the new version (at most 50).',
  'canary.bake': 'How long the canary bakes before its verdict.',
  waves: 'Region waves after the canary, in order.',
  'waves[].name': 'Wave name.',
  'waves[].targets': 'Targets stepped together, in parallel (any mix of providers).',
  'waves[].steps': 'Traffic percents, increasing, ending at 100.',
  'waves[].bake': 'Bake after each step.',
  'waves[].approval': 'Wait for an approval (approvers) before the wave.',
  parity:
    'Canary/production parity, checked in preflight before anything changes: each target’s stable configuration is compared with the first canary target of its provider (Lambda: runtime, architecture, memory, timeout, layers, reserved concurrency, VPC shape, env keys and values by salted hash, Secrets Manager/SSM references; Cloud Run: cpu, memory, concurrency, min/max instances, ingress, env, secret references). `fail` stops the rollout naming target and field; `warn` records the differences in status and alerts. Region, names, ARNs and the code/image differ by design and are not compared.',
  rollback: 'The analysis and rollback rule.',
  'rollback.max_error_rate_increase_pp': 'Breach when canary error rate > baseline + this many percentage points.',
  'rollback.p99_latency_ms': 'Breach when canary p99 latency exceeds this SLO.',
  'rollback.min_requests': 'Fewer canary requests than this is "no data" (inconclusive).',
  'rollback.on_no_data': 'No data: extend the bake then fail, fail, switch to synthetic traffic, or pass (explicit opt-in).',
  'rollback.max_extensions': 'How many times a bake is extended for lack of data.',
  'rollback.interval':
    'Analysis interval during bakes (default: only at the end of each bake) and during waits with traffic on the new version (default there: 1 minute).',
  'rollback.revert_retry_for':
    'How long a revert is retried (throttling, 5xx) before it escalates as rollback-failed; non-retryable errors escalate at once.',
  'rollback.judge': 'How samples are judged.',
  'rollback.judge.kind': '`threshold` (the rule above) or `statistical` (Mann-Whitney U per metric, Kayenta-style score).',
  'rollback.judge.confidence': 'statistical: a metric is worse only when p < 1 - confidence.',
  'rollback.judge.pass_score': 'statistical: score at or above which the verdict is pass.',
  'rollback.judge.marginal_score': 'statistical: score at or above which the verdict is inconclusive (below: fail).',
  'rollback.judge.groups': 'statistical: metric group weights.',
  'rollback.judge.metrics': 'statistical: the metrics compared.',
  'rollback.judge.metrics[].name': 'Metric name (in reasons).',
  'rollback.judge.metrics[].samples': '`errors` (0/1 per request), `latencies` (raw), or `series:NAME` (a provider series).',
  'rollback.judge.metrics[].group': 'Group (weighted in the score).',
  'rollback.judge.metrics[].direction': 'Which way is worse.',
  'rollback.judge.metrics[].min_samples': 'Fewer samples per revision: no data for this metric.',
  'rollback.judge.metrics[].allowed_change': 'Relative change of the central value tolerated.',
  'rollback.judge.metrics[].min_abs_change': 'Absolute change tolerated.',
  'rollback.judge.metrics[].statistic': 'Central value: median or mean.',
  'rollback.judge.metrics[].critical': 'A worse critical metric fails whatever the score.',
  'rollback.judge.metrics[].unit': 'Unit shown in reasons.',
  'rollback.metrics': 'Where samples come from, per target kind.',
  'rollback.metrics.aws-lambda': 'Metric source for Lambda targets.',
  'rollback.metrics.cloud-run': 'Metric source for Cloud Run targets.',
  'rollback.metrics.*.source': 'The native source (CloudWatch / Cloud Monitoring), `prometheus` or `synthetic`.',
  'rollback.metrics.*.prometheus': 'Prometheus HTTP API and PromQL templates ({{revision}}, {{window}}, ...).',
  'rollback.metrics.*.prometheus.url':
    'Prometheus base URL (http or https); must pass the worker’s `ROLLGATE_ALLOWED_URLS` (metadata/link-local hosts and redirects are refused).',
  'rollback.metrics.*.prometheus.requests': 'PromQL: requests of {{revision}} over {{window}}.',
  'rollback.metrics.*.prometheus.errors': 'PromQL: errors of {{revision}} over {{window}}.',
  'rollback.metrics.*.prometheus.latency_p99_ms': 'PromQL: p99 latency in ms.',
  'rollback.metrics.*.prometheus.step': 'query_range step (series for the statistical judge).',
  'rollback.metrics.*.prometheus.range_window': '{{window}} of range queries (>= 2 scrape intervals).',
  'rollback.metrics.*.prometheus.min_window': 'Shortest {{window}} of the totals queries.',
  'rollback.metrics.*.synthetic': 'Synthetic traffic: bounded requests to the canary and the stable revision.',
  'rollback.metrics.*.synthetic.requests': 'Requests per revision (at most 500).',
  'rollback.metrics.*.synthetic.concurrency': 'In flight per revision (at most 16).',
  'rollback.metrics.*.synthetic.timeout': 'Per request.',
  'rollback.metrics.*.synthetic.path': 'cloud-run: path on the revision URL.',
  'rollback.metrics.*.synthetic.payload': 'aws-lambda: Invoke payload.',
  'rollback.metrics.*.synthetic.expect_contains': 'A response must contain this text to count as a success.',
  'rollback.custom_checks': 'Business/quality checks: an HTTP endpoint that answers a number, with a threshold.',
  'rollback.custom_checks[].name': 'Check name (in reasons), e.g. drift.',
  'rollback.custom_checks[].url':
    'http(s) URL; may contain {{revision}}, {{baseline}}, {{target}}. Must pass the worker’s `ROLLGATE_ALLOWED_URLS`; metadata/link-local hosts and redirects are refused.',
  'rollback.custom_checks[].json_path': 'Path to the number in a JSON body (default: the body is the number).',
  'rollback.custom_checks[].threshold': 'Threshold.',
  'rollback.custom_checks[].direction': 'higher-is-worse: value > threshold fails; lower-is-worse: value < threshold fails.',
  'rollback.custom_checks[].timeout': 'Per request.',
  'rollback.custom_checks[].targets': 'Targets it applies to (default: every analysed target).',
  approvers:
    'Who may approve or reject waves: names, or `group:NAME` (a group in a verified token, see docs/security-identities.md); the starter may not approve.',
  min_approvals: 'How many distinct people (verified subjects when identities are verified) must approve a wave before it goes on.',
  notify: 'Alerts.',
  'notify.webhook_env':
    'Name of the worker variable (`ROLLGATE_WEBHOOK_<NAME>`) holding the URL of a Slack-compatible webhook (JSON POST with `text`, retried with backoff); the URL never enters the spec, history or status, and must pass the worker’s `ROLLGATE_ALLOWED_URLS`.',
  'notify.webhook':
    'Refused (a URL here would be stored in the workflow history and every status): use `webhook_env`. Rollouts started before keep alerting to it.',
  'notify.escalate_after': 'The alert escalates when the same stage failed in this many consecutive rollouts of the service (0: never).',
  freeze_windows: 'Windows in which no traffic step advances.',
  'freeze_windows[].name': 'Window name.',
  'freeze_windows[].timezone': 'IANA time zone of the times.',
  'freeze_windows[].weekly': 'Weekly window.',
  'freeze_windows[].weekly.days': 'Days (mon..sun).',
  'freeze_windows[].weekly.from': 'Start, HH:MM.',
  'freeze_windows[].weekly.to': 'End, HH:MM (24:00 for midnight).',
  'freeze_windows[].from': 'One-off window start, local YYYY-MM-DDTHH:MM.',
  'freeze_windows[].to': 'One-off window end, local YYYY-MM-DDTHH:MM.',
  shared_dependencies: 'Services sharing a dependency never shift traffic at the same time.',
};

export interface FieldRow {
  path: string;
  type: string;
  required: boolean;
  default?: string;
}

function def(s: ZodTypeAny): any {
  return (s as any)._def;
}

function describeType(s: ZodTypeAny): string {
  const d = def(s);
  // A field that states its own type (custom validators, e.g. commands: string or argv list).
  if (typeof d.description === 'string') return d.description;
  switch (d.typeName) {
    case 'ZodString':
      return 'string';
    case 'ZodNumber':
      return d.checks?.some((c: any) => c.kind === 'int') ? 'integer' : 'number';
    case 'ZodBoolean':
      return 'boolean';
    case 'ZodEnum':
      return d.values.map((v: string) => `\`${v}\``).join(' \\| ');
    case 'ZodLiteral':
      return `\`${d.value}\``;
    case 'ZodArray':
      return `list of ${describeType(d.type)}`;
    case 'ZodObject':
      return 'object';
    case 'ZodRecord':
      return 'map';
    case 'ZodUnion':
      return d.options.map(describeType).join(' or ');
    case 'ZodDiscriminatedUnion':
      return 'object (by kind)';
    case 'ZodUnknown':
    case 'ZodAny':
      return 'any';
    case 'ZodEffects':
    case 'ZodOptional':
    case 'ZodDefault':
      return describeType(unwrap(s).inner);
    default:
      return d.typeName;
  }
}

function unwrap(s: ZodTypeAny): { inner: ZodTypeAny; optional: boolean; dflt?: unknown } {
  let cur = s;
  let optional = false;
  let dflt: unknown;
  for (;;) {
    const d = def(cur);
    if (d.typeName === 'ZodOptional') {
      optional = true;
      cur = d.innerType;
    } else if (d.typeName === 'ZodDefault') {
      optional = true;
      dflt ??= d.defaultValue();
      cur = d.innerType;
    } else if (d.typeName === 'ZodEffects') cur = d.schema;
    else return { inner: cur, optional, dflt };
  }
}

export function specFields(): FieldRow[] {
  const rows = new Map<string, FieldRow>();
  const walk = (s: ZodTypeAny, path: string, asOption = false) => {
    const u = unwrap(s);
    const d = def(u.inner);
    // List items are described by their list's row and their own fields' rows.
    if (path && !asOption && !path.endsWith('[]')) {
      const empty = u.dflt === undefined || (typeof u.dflt === 'object' && u.dflt !== null && Object.keys(u.dflt).length === 0);
      const row = { path, type: describeType(u.inner), required: !u.optional, default: empty ? undefined : JSON.stringify(u.dflt) };
      const prev = rows.get(path);
      if (!prev) rows.set(path, row);
      else if (prev.type !== row.type) prev.type = `${prev.type} / ${row.type}`;
    }
    if (d.typeName === 'ZodObject') for (const [k, v] of Object.entries(d.shape())) walk(v as ZodTypeAny, path ? `${path}.${k}` : k);
    else if (d.typeName === 'ZodArray') walk(d.type, `${path}[]`);
    else if (d.typeName === 'ZodDiscriminatedUnion') for (const o of d.options) walk(o, path, true);
  };
  walk(RolloutSpecSchema, '', true);
  // The two metric-source blocks share one shape: document it once as `*`.
  const out: FieldRow[] = [];
  for (const r of rows.values()) {
    const m = /^rollback\.metrics\.(aws-lambda|cloud-run)\.(.+)$/.exec(r.path);
    if (m) {
      if (m[1] === 'aws-lambda') out.push({ ...r, path: `rollback.metrics.*.${m[2]}` });
      continue;
    }
    out.push(r);
  }
  return out;
}

export function renderSpecReference(): string {
  const rows = specFields();
  const lines = [
    '# Rollout spec reference',
    '',
    '<!-- generated by `npm run spec-reference` from src/spec/schema.ts and src/spec/reference.ts; do not edit -->',
    '',
    'Every field of a rollout spec (YAML or JSON). `rollgate validate FILE` checks a spec and names the path of every problem.',
    'A spec may be at most 256 KiB as JSON (it travels in the Temporal workflow input, status and result; the server refuses payloads over 2 MB).',
    'Durations are strings such as `30 seconds`, `5m`, `1 hour`.',
    '',
    '| field | type | required | default | meaning |',
    '|---|---|---|---|---|',
  ];
  for (const r of rows)
    lines.push(
      `| \`${r.path}\` | ${r.type} | ${r.required ? 'yes' : ''} | ${r.default ? `\`${r.default.replace(/\|/g, '\\|')}\`` : ''} | ${DESCRIPTIONS[r.path] ?? ''} |`,
    );
  return `${lines.join('\n')}\n`;
}

if (require.main === module) {
  process.stdout.write(renderSpecReference());
}
