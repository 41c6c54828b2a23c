/**
 * The rollout spec: one release of one service. Pure (no I/O) so the CLI, the client and tests
 * share it, and so workflow code can import the types and the duration helpers.
 */
import { z } from 'zod';
import { durationMs } from './duration';

const name = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be lowercase letters, digits and dashes (max 63)');

const duration = z.string().refine((s) => durationMs(s) !== undefined, {
  message: 'must be a duration such as "30 seconds", "5m" or "1 hour"',
});

const sha256Hex = z.string().regex(/^[a-f0-9]{64}$/, 'must be 64 lowercase hex characters (sha256)');

const command = z.string().min(1, 'must not be empty');

export const ArtifactSchema = z
  .object({
    /** Build once: run `build.command` in `build.cwd`, then record sha256 of `build.output`. */
    build: z
      .object({ command, output: z.string().min(1), cwd: z.string().optional() })
      .strict()
      .optional(),
    /** Prebuilt zip for Lambda; `sha256` pins it. */
    file: z.string().min(1).optional(),
    sha256: sha256Hex.optional(),
    /** Prebuilt container image by digest (Cloud Run). */
    image: z
      .string()
      .regex(/^[^@\s]+@sha256:[a-f0-9]{64}$/, 'must be an image reference pinned by digest (name@sha256:...)')
      .optional(),
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

const rollback = z
  .object({
    /** Breach when canary error rate > baseline error rate + this many percentage points. */
    max_error_rate_increase_pp: z.number().min(0).max(100).default(2),
    /** Breach when canary p99 latency is above this SLO. */
    p99_latency_ms: z.number().positive().optional(),
    /** Fewer canary requests than this in a window means "no data" (inconclusive). */
    min_requests: z.number().int().min(0).default(20),
    /** What an inconclusive (no data) verdict does once extensions are used up. */
    on_no_data: z.enum(['extend-then-fail', 'fail', 'pass']).default('extend-then-fail'),
    max_extensions: z.number().int().min(0).max(10).default(2),
    /** Analysis runs at this interval during every bake (and once at its end). */
    interval: duration.optional(),
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
    test: z.object({ command, cwd: z.string().optional() }).strict().optional(),
    migration: z
      .object({
        command,
        /** Prints the current schema revision; it must equal schema_rev after the migration. */
        current_command: command,
        cwd: z.string().optional(),
      })
      .strict()
      .optional(),
    targets: z.array(TargetSchema).min(1, 'needs at least one target'),
    probes: z.array(probe).default([]),
    canary: z.object({ targets: z.array(name).min(1, 'needs at least one target'), weight: percent.max(50), bake: duration }).strict(),
    waves: z.array(wave).default([]),
    rollback: rollback.default({}),
    approvers: z.array(z.string().min(1)).default([]),
    notify: z
      .object({ webhook: z.string().url('must be an http(s) URL') })
      .strict()
      .optional(),
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
    if (spec.rollback.interval) {
      const iv = durationMs(spec.rollback.interval) ?? 0;
      if (iv < 1000) ctx.addIssue({ code: 'custom', path: ['rollback', 'interval'], message: 'must be >= 1 second' });
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

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
