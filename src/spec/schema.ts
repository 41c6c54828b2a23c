/**
 * The rollout spec: one release of one service. Pure (no I/O) so the CLI, the client and tests
 * share it, and so workflow code can import the types and the duration helpers.
 */
import { z } from 'zod';
import { durationMs } from './duration';
import { checkArgv, splitCommand } from './argv';
import { hardRefusal } from '../security/url-policy';
import { PINNED_IMAGE, RELEASE_CONTRACT_KEYS } from '../contract/release';

const name = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be lowercase letters, digits and dashes (max 63)');

const duration = z.string().refine((s) => durationMs(s) !== undefined, {
  message: 'must be a duration such as "30 seconds", "5m" or "1 hour"',
});

const sha256Hex = z.string().regex(/^[a-f0-9]{64}$/, 'must be 64 lowercase hex characters (sha256)');

/** A command: an argv list, or a string split into one without a shell (src/spec/argv.ts). One message for either shape. */
const command = (z.any().describe('string or list of string') as unknown as z.ZodType<string | string[]>).superRefine((v, ctx) => {
  if (v === undefined) ctx.addIssue({ code: 'invalid_type', expected: 'string', received: 'undefined' });
  else if (!(typeof v === 'string' || (Array.isArray(v) && v.every((x) => typeof x === 'string'))))
    ctx.addIssue({ code: 'custom', message: 'must be a command string or an argv list of strings' });
  else if (v.length === 0) ctx.addIssue({ code: 'custom', message: 'must not be empty' });
});

/** Set by rollgate itself in every command's environment: a spec may not declare them. */
export const RESERVED_COMMAND_ENV = [...RELEASE_CONTRACT_KEYS, 'ROLLGATE_SCHEMA_REV', 'PATH', 'HOME'];

/** Variables a command gets besides PATH, HOME, the contract and the runner's allow-list. Not for secrets: they are in the spec. */
const commandEnv = z
  .record(
    z.string().superRefine((k, ctx) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
        ctx.addIssue({ code: 'custom', message: `"${k}" is not a variable name (letters, digits, _)` });
      else if (RESERVED_COMMAND_ENV.includes(k) || k.startsWith('ROLLGATE_'))
        ctx.addIssue({ code: 'custom', message: `"${k}" is set by rollgate or the runner and cannot be declared` });
    }),
    z.union([z.string(), z.number(), z.boolean()]).transform(String),
  )
  .optional();

/** `shell: true` runs the command string with `bash -c` (explicitly; never implied). */
const shellFlag = z.boolean().optional();

/** Checks a command block's command fields against its `shell` flag (argv rules in src/spec/argv.ts). */
function checkCommands(block: { shell?: boolean } & Record<string, unknown>, fields: string[], ctx: z.RefinementCtx): void {
  for (const f of fields) {
    const c = block[f] as string | string[] | undefined;
    const valid = typeof c === 'string' || (Array.isArray(c) && c.every((x) => typeof x === 'string'));
    if (!valid || c.length === 0) continue; // reported by `command`
    if (block.shell) {
      if (typeof c !== 'string')
        ctx.addIssue({
          code: 'custom',
          path: [f],
          message: 'shell: true runs one command string with bash -c: give the command as a string',
        });
      continue;
    }
    const res = typeof c === 'string' ? splitCommand(c) : checkArgv(c);
    if (!res.ok) ctx.addIssue({ code: 'custom', path: [f], message: `${res.error}` });
  }
}

/** An http:// or https:// URL (z.string().url() alone also accepts ftp:, file:, mailto: ...). */
const httpUrl = z.string().superRefine((u, ctx) => {
  let protocol: string;
  try {
    protocol = new URL(u).protocol;
  } catch {
    return void ctx.addIssue({ code: 'custom', message: 'must be an http(s) URL' });
  }
  if (protocol !== 'http:' && protocol !== 'https:')
    return void ctx.addIssue({ code: 'custom', message: `must be an http(s) URL, not ${protocol.replace(/:$/, '')}:` });
  // Metadata and link-local hosts are refused by every worker whatever its allow-list: say so now.
  const refused = hardRefusal(new URL(u));
  if (refused) ctx.addIssue({ code: 'custom', message: `${refused}: never called (src/security/url-policy.ts)` });
});

/** Workers resolve notify.webhook_env in their own environment; only variables meant for it. */
export const WEBHOOK_ENV_PATTERN = /^ROLLGATE_WEBHOOK_[A-Z0-9_]+$/;

const notify = z
  .object({
    /** Name of the worker variable that holds the webhook URL (the URL never enters the spec). */
    webhook_env: z
      .string()
      .regex(WEBHOOK_ENV_PATTERN, 'must name a worker variable ROLLGATE_WEBHOOK_<NAME> (capital letters, digits, _)')
      .optional(),
    /** Refused: kept in the type for runs started before webhook_env (their history carries it). */
    webhook: z
      .string()
      .optional()
      .superRefine((v, ctx) => {
        if (v !== undefined)
          ctx.addIssue({
            code: 'custom',
            message:
              'a webhook URL in the spec would be stored in the workflow history and shown by every status: put it in a variable ROLLGATE_WEBHOOK_<NAME> on the workers and give its name as notify.webhook_env',
          });
      }),
    /** Say so in the alert when the same stage failed in this many consecutive rollouts (0: never). */
    escalate_after: z.number().int().min(0).max(100).default(3),
  })
  .strict()
  .superRefine((n, ctx) => {
    if (n.webhook_env === undefined && n.webhook === undefined)
      ctx.addIssue({ code: 'custom', path: ['webhook_env'], message: 'required: the name of the worker variable with the webhook URL' });
  });

/** Analyses one rollout may plan for its bakes at `rollback.interval` (with every extension). */
const MAX_PLANNED_ANALYSES = 2_500;

export const ArtifactSchema = z
  .object({
    /** Build once: run `build.command` in `build.cwd`, then record sha256 of `build.output`. */
    build: z
      .object({ command, shell: shellFlag, env: commandEnv, output: z.string().min(1), cwd: z.string().optional() })
      .strict()
      .superRefine((b, ctx) => checkCommands(b, ['command'], ctx))
      .optional(),
    /** Prebuilt zip for Lambda; `sha256` pins it. */
    file: z.string().min(1).optional(),
    sha256: sha256Hex.optional(),
    /** Prebuilt container image by digest (Cloud Run). */
    image: z.string().regex(PINNED_IMAGE, 'must be an image reference pinned by digest (name@sha256:...)').optional(),
  })
  .strict()
  .superRefine((a, ctx) => {
    const sources = [a.build, a.file, a.image].filter((x) => x !== undefined).length;
    if (sources === 0) ctx.addIssue({ code: 'custom', message: 'needs one of build, file or image' });
    if (a.build && a.file) ctx.addIssue({ code: 'custom', path: ['file'], message: 'give build or file, not both' });
    if (a.sha256 && !a.file) ctx.addIssue({ code: 'custom', path: ['sha256'], message: 'sha256 pins a prebuilt file' });
  });

const lambdaTarget = z
  .object({
    name,
    provider: z.literal('aws-lambda'),
    region: z.string().regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, 'must be an AWS region such as eu-west-1'),
    function: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be a Lambda function name'),
    alias: z.string().regex(/^(?!^[0-9]+$)[A-Za-z0-9_-]{1,128}$/, 'must be a Lambda alias name (not a number)'),
  })
  .strict();

const cloudRunTarget = z
  .object({
    name,
    provider: z.literal('cloud-run'),
    project: z.string().regex(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, 'must be a GCP project id'),
    region: z.string().regex(/^[a-z]+-[a-z]+\d$/, 'must be a GCP region such as europe-west1'),
    /** Cloud Run caps service names at 49 characters (revision names SERVICE-SUFFIX must fit 63). */
    service: name.refine((s) => s.length <= 49, 'must be at most 49 characters (Cloud Run service name)'),
    tag: name.optional(),
  })
  .strict();

export const TargetSchema = z.discriminatedUnion('provider', [lambdaTarget, cloudRunTarget], {
  errorMap: (issue, ctx) =>
    issue.code === 'invalid_union_discriminator'
      ? { message: `provider must be one of ${issue.options.map((o) => `"${String(o)}"`).join(', ')}` }
      : { message: ctx.defaultError },
});

const probe = z
  .object({
    name,
    /** Lambda: JSON payload sent with Invoke (Qualifier = the new version). Cloud Run: HTTP path on the tag URL. */
    payload: z.unknown().optional(),
    path: z.string().startsWith('/').optional(),
    expect_contains: z.string().optional(),
    timeout: duration.default('10 seconds'),
    /** Tries when the probe gets no answer at all (timeout, refused connection); a wrong answer fails at once. */
    attempts: z.number().int().min(1).max(10).default(3),
  })
  .strict();

const percent = z.number().gt(0, 'must be > 0').max(100, 'must be <= 100');

const wave = z
  .object({
    name,
    targets: z.array(name).min(1, 'needs at least one target'),
    steps: z
      .array(percent)
      .min(1, 'needs at least one step')
      .refine((s) => s.every((v, i) => i === 0 || v > s[i - 1]), 'must increase step by step')
      .refine((s) => s[s.length - 1] === 100, 'last step must be 100'),
    bake: duration,
    approval: z.boolean().default(false),
  })
  .strict();

// ---- analysis: metric sources, judges, custom checks ----------------------------------------
const direction = z.enum(['higher-is-worse', 'lower-is-worse']);
const PROM_PLACEHOLDERS = ['revision', 'version', 'window', 'target', 'function', 'alias', 'region', 'project', 'service'];
const promQuery = z
  .string()
  .min(1)
  .superRefine((q, ctx) => {
    for (const m of q.matchAll(/\{\{\s*([a-zA-Z_]+)\s*\}\}/g))
      if (!PROM_PLACEHOLDERS.includes(m[1]))
        ctx.addIssue({
          code: 'custom',
          message: `unknown placeholder {{${m[1]}}} (known: ${PROM_PLACEHOLDERS.map((p) => `{{${p}}}`).join(', ')})`,
        });
    if (!/\{\{\s*(revision|version)\s*\}\}/.test(q))
      ctx.addIssue({ code: 'custom', message: 'must select the revision with {{revision}}' });
  });
const prometheusSource = z
  .object({
    url: httpUrl,
    requests: promQuery,
    errors: promQuery,
    latency_p99_ms: promQuery.optional(),
    /** query_range step (series for the statistical judge). */
    step: duration.default('30 seconds'),
    /** {{window}} of range queries; >= 2 scrape intervals. */
    range_window: duration.optional(),
    /** Shortest {{window}} of the totals queries. */
    min_window: duration.default('1 minute'),
  })
  .strict();
const syntheticTraffic = z
  .object({
    requests: z.number().int().min(1).max(500).default(50),
    concurrency: z.number().int().min(1).max(16).default(4),
    timeout: duration.default('5 seconds'),
    /** cloud-run: path on the revision's tag URL. */
    path: z.string().startsWith('/').default('/'),
    /** aws-lambda: Invoke payload (Qualifier = the version). */
    payload: z.unknown().optional(),
    expect_contains: z.string().optional(),
  })
  .strict();
const metricSource = (native: 'cloudwatch' | 'cloud-monitoring') =>
  z
    .object({
      source: z.enum([native, 'prometheus', 'synthetic']).default(native),
      prometheus: prometheusSource.optional(),
      /** Also used by on_no_data: synthetic. */
      synthetic: syntheticTraffic.default({}),
    })
    .strict();
const CHECK_PLACEHOLDERS = ['revision', 'version', 'baseline', 'target'];
const customCheck = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/, 'must be lowercase letters, digits and _'),
    /** May contain {{revision}} (or {{version}}), {{baseline}}, {{target}}. Answers a number (text, or JSON at json_path). */
    url: httpUrl.superRefine((u, ctx) => {
      // An unknown placeholder would be sent as is: refuse it here rather than ask the endpoint about "{{revison}}".
      for (const m of u.matchAll(/\{\{\s*([a-zA-Z_]+)\s*\}\}/g))
        if (!CHECK_PLACEHOLDERS.includes(m[1]))
          ctx.addIssue({
            code: 'custom',
            message: `unknown placeholder {{${m[1]}}} (known: ${CHECK_PLACEHOLDERS.map((p) => `{{${p}}}`).join(', ')})`,
          });
    }),
    json_path: z.string().min(1).optional(),
    threshold: z.number(),
    direction,
    timeout: duration.default('10 seconds'),
    /** Default: every analysed target. */
    targets: z.array(name).optional(),
  })
  .strict();
const statMetric = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_]{0,62}$/, 'must be lowercase letters, digits and _'),
    samples: z.union([
      z.enum(['errors', 'latencies']),
      z.custom<`series:${string}`>(
        (v) => typeof v === 'string' && /^series:[a-z0-9_]+$/.test(v),
        'must be "errors", "latencies" or "series:NAME"',
      ),
    ]),
    group: z.string().min(1),
    direction: direction.default('higher-is-worse'),
    min_samples: z.number().int().min(1).default(10),
    allowed_change: z.number().min(0).default(0.1),
    min_abs_change: z.number().min(0).default(0),
    statistic: z.enum(['median', 'mean']).default('median'),
    critical: z.boolean().default(false),
    unit: z.string().optional(),
  })
  .strict();
/** The statistical judge's config: the one definition of its fields, defaults and checks (src/analysis/statistical-judge.ts derives from it). */
export const statisticalJudgeFields = z
  .object({
    confidence: z.number().min(0.5).lt(1).default(0.95),
    pass_score: z.number().min(0).max(100).default(95),
    marginal_score: z.number().min(0).max(100).default(75),
    groups: z.record(z.string(), z.number().min(0)).default({ errors: 60, latency: 40 }),
    metrics: z
      .array(statMetric)
      .min(1)
      .default([
        { name: 'error_rate', samples: 'errors', group: 'errors', min_samples: 50, min_abs_change: 0.005 },
        { name: 'latency', samples: 'latencies', group: 'latency', unit: 'ms' },
      ]),
  })
  .strict();

/** Checks across fields of a statistical judge config (path-relative to the judge). */
export function checkStatisticalJudge(j: z.output<typeof statisticalJudgeFields>, ctx: z.RefinementCtx): void {
  if (j.marginal_score > j.pass_score) ctx.addIssue({ code: 'custom', path: ['marginal_score'], message: 'must be <= pass_score' });
  const seen = new Set<string>();
  j.metrics.forEach((m, i) => {
    if (seen.has(m.name)) ctx.addIssue({ code: 'custom', path: ['metrics', i, 'name'], message: `duplicate metric "${m.name}"` });
    seen.add(m.name);
    if (Object.keys(j.groups).length && !(m.group in j.groups))
      ctx.addIssue({ code: 'custom', path: ['metrics', i, 'group'], message: `group "${m.group}" has no weight in groups` });
  });
  if (Object.keys(j.groups).length && !Object.values(j.groups).some((w) => w > 0))
    ctx.addIssue({ code: 'custom', path: ['groups'], message: 'at least one weight must be > 0' });
}

const statisticalJudge = statisticalJudgeFields.extend({ kind: z.literal('statistical') }).strict();
const judge = z
  .discriminatedUnion('kind', [z.object({ kind: z.literal('threshold') }).strict(), statisticalJudge])
  .superRefine((j, ctx) => {
    if (j.kind === 'statistical') checkStatisticalJudge(j, ctx);
  })
  .default({ kind: 'threshold' });

const rollback = z
  .object({
    /** Breach when canary error rate > baseline error rate + this many percentage points. */
    max_error_rate_increase_pp: z.number().min(0).max(100).default(2),
    /** Breach when canary p99 latency is above this SLO. */
    p99_latency_ms: z.number().positive().optional(),
    /** Fewer canary requests than this in a window means "no data" (inconclusive). */
    min_requests: z.number().int().min(0).default(20),
    /** What an inconclusive (no data) verdict does: extend the bake (then fail), fail, switch to synthetic traffic, or pass (explicit opt-in). */
    on_no_data: z.enum(['extend-then-fail', 'fail', 'synthetic', 'pass']).default('extend-then-fail'),
    max_extensions: z.number().int().min(0).max(10).default(2),
    /** Analysis runs at this interval during every bake (and once at its end). */
    interval: duration.optional(),
    /**
     * How long a revert is retried (throttling, 5xx) before it escalates to the operator as
     * rollback-failed. Non-retryable errors (permission, missing resource) escalate at once.
     */
    revert_retry_for: duration.default('3 minutes'),
    /** threshold (the rule above) or statistical (Mann-Whitney per metric, Kayenta-style score). */
    judge,
    /** Where samples come from, per target kind. */
    metrics: z
      .object({ 'aws-lambda': metricSource('cloudwatch').default({}), 'cloud-run': metricSource('cloud-monitoring').default({}) })
      .strict()
      .default({}),
    /** Business/quality checks: an HTTP endpoint that answers a number, with a threshold. */
    custom_checks: z.array(customCheck).default([]),
  })
  .strict();

const weekday = z.enum(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']);
const clock = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/, 'must be HH:MM (24h)');
const localDateTime = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/, 'must be a local date-time YYYY-MM-DDTHH:MM');

const timeZone = z.string().refine(isTimeZone, { message: 'must be an IANA time zone such as Europe/Berlin' });

export const FreezeWindowSchema = z
  .object({
    name,
    timezone: timeZone,
    weekly: z
      .object({ days: z.array(weekday).min(1), from: clock, to: clock })
      .strict()
      .optional(),
    from: localDateTime.optional(),
    to: localDateTime.optional(),
  })
  .strict()
  .superRefine((w, ctx) => {
    const oneOff = w.from !== undefined || w.to !== undefined;
    if (!!w.weekly === oneOff) ctx.addIssue({ code: 'custom', message: 'give either weekly {days, from, to} or one-off from/to' });
    if (oneOff && (!w.from || !w.to))
      ctx.addIssue({ code: 'custom', path: [w.from ? 'to' : 'from'], message: 'one-off windows need from and to' });
    if (w.from && w.to && w.from >= w.to) ctx.addIssue({ code: 'custom', path: ['to'], message: 'must be after from' });
    if (w.weekly && w.weekly.from >= w.weekly.to)
      ctx.addIssue({ code: 'custom', path: ['weekly', 'to'], message: 'must be after weekly.from' });
  });

export const RolloutSpecSchema = z
  .object({
    service: name,
    release: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 of letters, digits, . _ -'),
    schema_rev: z.union([z.string().min(1), z.number().int().nonnegative()]).transform(String),
    index_hash: z.string().min(1).optional(),
    artifact: ArtifactSchema,
    test: z
      .object({ command, shell: shellFlag, env: commandEnv, cwd: z.string().optional() })
      .strict()
      .superRefine((t, ctx) => checkCommands(t, ['command'], ctx))
      .optional(),
    migration: z
      .object({
        command,
        /** Prints the current schema revision; it must equal schema_rev after the migration. */
        current_command: command,
        /** For both commands. */
        shell: shellFlag,
        env: commandEnv,
        cwd: z.string().optional(),
      })
      .strict()
      .superRefine((m, ctx) => checkCommands(m, ['command', 'current_command'], ctx))
      .optional(),
    targets: z.array(TargetSchema).min(1, 'needs at least one target'),
    probes: z.array(probe).default([]),
    canary: z.object({ targets: z.array(name).min(1, 'needs at least one target'), weight: percent.max(50), bake: duration }).strict(),
    waves: z.array(wave).default([]),
    /** Canary/production parity in preflight: `fail` stops the rollout on a difference, `warn` records it. */
    parity: z.enum(['fail', 'warn']).default('warn'),
    rollback: rollback.default({}),
    /** Names, or `group:NAME` (a group claim of a verified token). */
    approvers: z
      .array(
        z
          .string()
          .min(1)
          .refine((a) => !a.startsWith('group:') || a.length > 'group:'.length, 'group: needs a group name (group:NAME)'),
      )
      .default([]),
    /** Distinct people who must approve a wave before it goes on. */
    min_approvals: z.number().int().min(1).max(20).default(1),
    notify: notify.optional(),
    freeze_windows: z.array(FreezeWindowSchema).default([]),
    shared_dependencies: z.array(name).default([]),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const names = new Map<string, number>();
    spec.targets.forEach((t, i) => {
      if (names.has(t.name)) ctx.addIssue({ code: 'custom', path: ['targets', i, 'name'], message: `duplicate target name "${t.name}"` });
      names.set(t.name, i);
    });
    const checkRefs = (list: string[], path: (string | number)[]) =>
      list.forEach((n, i) => {
        if (!names.has(n)) ctx.addIssue({ code: 'custom', path: [...path, i], message: `unknown target "${n}"` });
      });
    checkRefs(spec.canary.targets, ['canary', 'targets']);
    const placed = new Map<string, string>();
    spec.waves.forEach((w, wi) => {
      checkRefs(w.targets, ['waves', wi, 'targets']);
      w.targets.forEach((t, ti) => {
        if (placed.has(t))
          ctx.addIssue({
            code: 'custom',
            path: ['waves', wi, 'targets', ti],
            message: `target "${t}" is already in wave "${placed.get(t)}"`,
          });
        placed.set(t, w.name);
      });
      if (w.approval && spec.approvers.length === 0)
        ctx.addIssue({ code: 'custom', path: ['waves', wi, 'approval'], message: 'needs approvers in the spec' });
    });
    const named = spec.approvers.filter((a) => !a.startsWith('group:')).length;
    if (spec.min_approvals > 1 && !spec.approvers.some((a) => a.startsWith('group:')) && spec.min_approvals > named)
      ctx.addIssue({
        code: 'custom',
        path: ['min_approvals'],
        message: `needs ${spec.min_approvals} distinct approvers, but approvers names ${named}`,
      });
    const waveNames = new Set<string>();
    spec.waves.forEach((w, wi) => {
      if (waveNames.has(w.name)) ctx.addIssue({ code: 'custom', path: ['waves', wi, 'name'], message: `duplicate wave name "${w.name}"` });
      waveNames.add(w.name);
    });
    const lambdaArtifact = spec.artifact.build || spec.artifact.file;
    spec.targets.forEach((t, i) => {
      if (t.provider === 'aws-lambda' && !lambdaArtifact)
        ctx.addIssue({
          code: 'custom',
          path: ['targets', i, 'provider'],
          message: 'aws-lambda targets need artifact.build or artifact.file (a zip)',
        });
      if (t.provider === 'cloud-run' && !spec.artifact.image)
        ctx.addIssue({
          code: 'custom',
          path: ['targets', i, 'provider'],
          message: 'cloud-run targets need artifact.image (pinned by digest)',
        });
    });
    for (const kind of ['aws-lambda', 'cloud-run'] as const) {
      const m = spec.rollback.metrics[kind];
      if (m.source === 'prometheus' && !m.prometheus)
        ctx.addIssue({
          code: 'custom',
          path: ['rollback', 'metrics', kind, 'prometheus'],
          message: 'source prometheus needs a prometheus block',
        });
    }
    const checkNames = new Set<string>();
    spec.rollback.custom_checks.forEach((c, i) => {
      if (checkNames.has(c.name))
        ctx.addIssue({ code: 'custom', path: ['rollback', 'custom_checks', i, 'name'], message: `duplicate check "${c.name}"` });
      checkNames.add(c.name);
      c.targets?.forEach((n, j) => {
        if (!names.has(n))
          ctx.addIssue({ code: 'custom', path: ['rollback', 'custom_checks', i, 'targets', j], message: `unknown target "${n}"` });
      });
    });
    const retryFor = durationMs(spec.rollback.revert_retry_for) ?? 0;
    if (retryFor < 5000) ctx.addIssue({ code: 'custom', path: ['rollback', 'revert_retry_for'], message: 'must be >= 5 seconds' });
    if (spec.rollback.interval) {
      const iv = durationMs(spec.rollback.interval) ?? 0;
      if (iv < 1000) ctx.addIssue({ code: 'custom', path: ['rollback', 'interval'], message: 'must be >= 1 second' });
      // Each analysis adds about 11 events to the rollout's history, which the server caps (51,200
      // events: past it the run is terminated and no saga runs). Refuse plans that would get close.
      const bakes = [spec.canary.bake, ...spec.waves.flatMap((w) => w.steps.map(() => w.bake))].map((b) => durationMs(b) ?? 0);
      const analyses = iv >= 1000 ? bakes.reduce((n, b) => n + Math.ceil(b / iv), 0) * (1 + spec.rollback.max_extensions) : 0;
      if (analyses > MAX_PLANNED_ANALYSES)
        ctx.addIssue({
          code: 'custom',
          path: ['rollback', 'interval'],
          message: `the bakes would run ${analyses} analyses at this interval (at most ${MAX_PLANNED_ANALYSES}, to keep the rollout's history within the server's limit): lengthen the interval or shorten the bakes`,
        });
    }
    // A statistical metric its source can never feed is "no data" at every analysis: the canary could
    // never pass. Raw latencies come only from synthetic traffic, per-step series only from Prometheus.
    const judge = spec.rollback.judge;
    if (judge.kind === 'statistical') {
      for (const kind of new Set(spec.targets.map((t) => t.provider))) {
        const source = spec.rollback.metrics[kind].source;
        judge.metrics.forEach((m, i) => {
          const problem =
            m.samples === 'latencies' && source !== 'synthetic' && spec.rollback.on_no_data !== 'synthetic'
              ? `raw latency samples come only from synthetic traffic, but ${kind} targets use source ${source}: set rollback.metrics.${kind}.source or rollback.on_no_data to synthetic${
                  source === 'prometheus' ? ', or use samples "series:latency_p99_ms"' : ''
                }`
              : m.samples.startsWith('series:') && source !== 'prometheus'
                ? `per-step series come only from prometheus, but ${kind} targets use source ${source}`
                : undefined;
          if (problem)
            ctx.addIssue({
              code: 'custom',
              path: ['rollback', 'judge', 'metrics', i, 'samples'],
              message: `metric "${m.name}": ${problem}`,
            });
        });
      }
    }
  });

export type RolloutSpecInput = z.input<typeof RolloutSpecSchema>;
export type RolloutSpec = z.output<typeof RolloutSpecSchema>;
export type TargetSpec = z.output<typeof TargetSchema>;
export type LambdaTargetSpec = Extract<TargetSpec, { provider: 'aws-lambda' }>;
export type CloudRunTargetSpec = Extract<TargetSpec, { provider: 'cloud-run' }>;
export type ProbeSpec = RolloutSpec['probes'][number];
export type WaveSpec = RolloutSpec['waves'][number];
export type RollbackRule = RolloutSpec['rollback'];
export type FreezeWindow = z.output<typeof FreezeWindowSchema>;
export type StatisticalJudgeSpec = Extract<RollbackRule['judge'], { kind: 'statistical' }>;

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
