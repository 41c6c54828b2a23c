/**
 * A pipeline file: one service's environments in order (`staging`, then `prod`), each with its
 * targets, canary, waves and gates (approval, soak in the environment before, freeze windows), plus
 * the settings every environment shares (artifact, probes, rollback rule, approvers, notify...).
 * An environment's rollout spec is the shared settings with the environment's fields on top, so
 * every environment is checked by the rollout spec's own schema (errors name the pipeline field).
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { durationMs } from './duration';
import type { RolloutSpec } from './schema';
import { checkSpecFiles, formatPath, resolveSpecPaths, SpecError, validateSpec, type SpecProblem } from './validate';

/** `rollgate promote` and `rollback` read this file when --pipeline is not given. */
export const DEFAULT_PIPELINE_FILE = 'rollgate-pipeline.yaml';

const name = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be lowercase letters, digits and dashes (max 63)');
const duration = z
  .string()
  .refine((s) => durationMs(s) !== undefined, { message: 'must be a duration such as "30 seconds", "5m" or "1 hour"' });

/** Fields of an environment (the rollout spec's own checks run on the spec built from them). */
const EnvironmentSchema = z
  .object({
    name,
    targets: z.array(z.unknown()).min(1, 'needs at least one target'),
    canary: z.unknown(),
    waves: z.array(z.unknown()).optional(),
    /** Required time since the release was promoted in the environment before this one. */
    soak: duration.optional(),
    /** An approval before every wave of this environment, and before a rollback to a release here. */
    approval: z.boolean().default(false),
    approvers: z.array(z.string()).optional(),
    freeze_windows: z.array(z.unknown()).optional(),
  })
  .strict();

/** Set per environment or by the command, never in the shared settings. */
const PER_ENVIRONMENT = ['release', 'targets', 'canary', 'waves'] as const;

const PipelineSchema = z
  .object({
    service: name,
    environments: z.array(EnvironmentSchema).min(1, 'needs at least one environment'),
  })
  .passthrough()
  .superRefine((p, ctx) => {
    const seen = new Set<string>();
    p.environments.forEach((e, i) => {
      if (seen.has(e.name))
        ctx.addIssue({ code: 'custom', path: ['environments', i, 'name'], message: `duplicate environment "${e.name}"` });
      seen.add(e.name);
    });
    if (p.environments[0]?.soak !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['environments', 0, 'soak'],
        message: 'the first environment has no environment before it to soak in',
      });
    for (const k of PER_ENVIRONMENT)
      if (k in p)
        ctx.addIssue({
          code: 'custom',
          path: [k],
          message:
            k === 'release'
              ? 'the release is given by the command (--release / --to)'
              : 'is set per environment (environments[].' + k + ')',
        });
  });

export type PipelineEnvironment = z.output<typeof EnvironmentSchema>;
export interface Pipeline {
  service: string;
  environments: PipelineEnvironment[];
  /** Every other field: the settings the environments share (rollout spec fields). */
  shared: Record<string, unknown>;
  /** The file's folder: relative paths (artifact.file, build cwd) resolve against it. */
  baseDir: string;
}

/** The rollout spec (as written, before validation) of one environment for one release. */
function environmentSpecInput(p: Pipeline, env: PipelineEnvironment, release: string): Record<string, unknown> {
  const waves = (env.waves ?? []).map((w) => (env.approval && w && typeof w === 'object' ? { ...w, approval: true } : w));
  return {
    ...p.shared,
    service: p.service,
    release,
    targets: env.targets,
    canary: env.canary,
    waves,
    ...(env.approvers ? { approvers: env.approvers } : {}),
    ...(env.freeze_windows ? { freeze_windows: env.freeze_windows } : {}),
  };
}

const ENV_FIELDS = new Set(['targets', 'canary', 'waves', 'approvers', 'freeze_windows']);

/** Validate a parsed pipeline: every problem with its path in the pipeline file. */
export function validatePipeline(raw: unknown, source = 'pipeline', baseDir = '.'): Pipeline {
  const res = PipelineSchema.safeParse(raw);
  if (!res.success)
    throw new SpecError(
      res.error.issues.map((i) => ({ path: formatPath(i.path), message: problemText(i) })),
      source,
    );
  const { service, environments, ...shared } = res.data;
  const p: Pipeline = { service, environments, shared, baseDir };
  const problems: SpecProblem[] = [];
  environments.forEach((env, i) => {
    try {
      validateSpec(environmentSpecInput(p, env, 'validate'), source);
      if (env.approval && (env.approvers ?? (shared.approvers as unknown[] | undefined) ?? []).length === 0)
        problems.push({ path: `environments[${i}].approval`, message: 'needs approvers (in the environment or the shared settings)' });
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      for (const q of err.problems) {
        const top = q.path.split(/[.[]/)[0];
        const path = ENV_FIELDS.has(top) ? `environments[${i}].${q.path}` : q.path;
        if (!problems.some((x) => x.path === path && x.message === q.message)) problems.push({ path, message: q.message });
      }
    }
  });
  if (problems.length) throw new SpecError(problems, source);
  return p;
}

function problemText(i: z.ZodIssue): string {
  if (i.code === 'unrecognized_keys') return `unknown field(s): ${i.keys.join(', ')}`;
  if (i.code === 'invalid_type' && i.received === 'undefined') return 'is required';
  return i.message;
}

export function loadPipelineFile(file: string): Pipeline {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SpecError(
      [
        {
          path: '(file)',
          message: code ? `cannot read ${file}: ${code}` : `not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`,
        },
      ],
      file,
    );
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new SpecError([{ path: '(root)', message: 'must be a mapping of fields' }], file);
  const p = validatePipeline(raw, file, dirname(file));
  const problems = checkSpecFiles(environmentSpec(p, p.environments[0].name, 'validate'), p.baseDir);
  if (problems.length) throw new SpecError(problems, file);
  return p;
}

/** Whether a parsed file is a pipeline (it declares environments) rather than a rollout spec. */
export function isPipelineDocument(raw: unknown): boolean {
  return typeof raw === 'object' && raw !== null && 'environments' in raw;
}

export function environmentOf(p: Pipeline, envName: string): PipelineEnvironment {
  const env = p.environments.find((e) => e.name === envName);
  if (!env)
    throw new SpecError([
      { path: 'environments', message: `no environment "${envName}" (the pipeline has ${p.environments.map((e) => e.name).join(', ')})` },
    ]);
  return env;
}

/** The validated rollout spec of `envName` for `release`, paths resolved against the pipeline file's folder. */
export function environmentSpec(p: Pipeline, envName: string, release: string): RolloutSpec {
  return resolveSpecPaths(validateSpec(environmentSpecInput(p, environmentOf(p, envName), release)), p.baseDir);
}

/** Gates of every environment in order, for promotionRefusal. */
export function environmentGates(p: Pipeline): { name: string; soakMs?: number }[] {
  return p.environments.map((e) => ({ name: e.name, ...(e.soak ? { soakMs: durationMs(e.soak) } : {}) }));
}
