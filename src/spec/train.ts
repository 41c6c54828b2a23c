/**
 * Release train files (`train:` at the top): the services, each with its rollout spec (a path
 * relative to the train file, or inline) and `depends_on`. Checked here before anything starts:
 * the file's shape (zod), every member's spec with the rollout validator (errors name the member),
 * unknown and duplicate services, a cycle (named in order), and a shared dependency lock that would
 * deadlock the train on itself (src/workflows/train-order.ts).
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { WEBHOOK_ENV_PATTERN, type RolloutSpec } from './schema';
import { checkSpecFiles, formatPath, loadSpecFile, resolveSpecPaths, SpecError, validateSpec, type SpecProblem } from './validate';
import { cycleText, findCycle, lockDeadlocks, referenceProblems, releaseOrder } from '../workflows/train-order';
import type { TrainSpec } from '../contract/train';

const name = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'must be lowercase letters, digits and dashes (max 63)');

/** At most this many members: every member spec travels in the train's input. */
export const MAX_TRAIN_MEMBERS = 20;
/** The member specs together, as JSON: the train's input stays far below Temporal's 2 MB payload limit. */
export const MAX_TRAIN_BYTES = 1024 * 1024;

export const TrainFileSchema = z
  .object({
    train: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 of letters, digits, . _ - (the workflow id is train-NAME)'),
    /** Every member's waves together (all at the canary, then all at wave 1, ...) instead of dependency order. */
    lockstep: z.boolean().default(false),
    notify: z
      .object({ webhook_env: z.string().regex(WEBHOOK_ENV_PATTERN, 'must name a ROLLGATE_WEBHOOK_<NAME> variable') })
      .strict()
      .optional(),
    services: z
      .array(
        z
          .object({
            spec: z.union([z.string().min(1), z.record(z.unknown())], {
              errorMap: () => ({ message: 'must be a spec file path or an inline spec' }),
            }),
            depends_on: z.array(name).default([]),
          })
          .strict(),
      )
      .min(1, 'needs at least one service')
      .max(MAX_TRAIN_MEMBERS, `at most ${MAX_TRAIN_MEMBERS} services`),
  })
  .strict();

export type TrainFile = z.output<typeof TrainFileSchema>;

/** A parsed file is a train when it has a `train:` key (a rollout spec has none). */
export function isTrainDocument(raw: unknown): boolean {
  return typeof raw === 'object' && raw !== null && !Array.isArray(raw) && 'train' in raw;
}

/** Whether the file at `file` is a train file (it parses and has `train:`); false when it cannot be read. */
export function isTrainFile(file: string): boolean {
  try {
    return isTrainDocument(parseYaml(readFileSync(file, 'utf8')));
  } catch {
    return false;
  }
}

/**
 * Validate a parsed train. Member specs given as paths are read relative to `baseDir` (the train
 * file's folder) and their relative paths resolved against their own folder; inline ones against
 * `baseDir`. Every problem is reported at once, each naming the member and the field.
 */
export function validateTrain(raw: unknown, baseDir: string, source = 'train'): TrainSpec {
  const res = TrainFileSchema.safeParse(raw);
  if (!res.success)
    throw new SpecError(
      res.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message })),
      source,
    );
  const file = res.data;
  const problems: SpecProblem[] = [];
  const members: TrainSpec['members'] = [];
  file.services.forEach((entry, i) => {
    const spec = memberSpec(entry.spec, baseDir, `services[${i}]`, problems);
    if (spec) members.push({ service: spec.service, dependsOn: entry.depends_on, spec });
  });
  if (problems.length) throw new SpecError(problems, source);
  const nodes = members.map((m) => ({ service: m.service, dependsOn: m.dependsOn, locks: m.spec.shared_dependencies }));
  problems.push(...referenceProblems(nodes));
  if (problems.length === 0) {
    const cycle = findCycle(nodes);
    if (cycle)
      problems.push({ path: 'services', message: `dependency cycle: ${cycleText(cycle)} (each must be promoted before the next)` });
  }
  problems.push(...lockDeadlocks(nodes, file.lockstep));
  const bytes = Buffer.byteLength(JSON.stringify(members), 'utf8');
  if (bytes > MAX_TRAIN_BYTES)
    problems.push({
      path: 'services',
      message: `the member specs are ${Math.ceil(bytes / 1024)} KiB as JSON, over ${MAX_TRAIN_BYTES / 1024} KiB (they travel in the train's workflow input)`,
    });
  if (problems.length) throw new SpecError(problems, source);
  return { train: file.train, lockstep: file.lockstep, ...(file.notify ? { notify: file.notify } : {}), members };
}

/** One member's spec, validated by the rollout validator; its problems are prefixed with the member's field. */
function memberSpec(ref: string | Record<string, unknown>, baseDir: string, at: string, problems: SpecProblem[]): RolloutSpec | undefined {
  const where = typeof ref === 'string' ? `${at} (${ref})` : `${at} (inline)`;
  try {
    if (typeof ref === 'string') {
      const path = isAbsolute(ref) ? ref : resolve(baseDir, ref);
      return resolveSpecPaths(loadSpecFile(path), dirname(path));
    }
    const spec = validateSpec(ref, where);
    const fileProblems = checkSpecFiles(spec, baseDir);
    if (fileProblems.length) throw new SpecError(fileProblems, where);
    return resolveSpecPaths(spec, baseDir);
  } catch (err) {
    if (!(err instanceof SpecError)) throw err;
    problems.push(...err.problems.map((p) => ({ path: `${where} ${p.path}`, message: p.message })));
    return undefined;
  }
}

/** Read and validate a train file. */
export function loadTrainFile(file: string): TrainSpec {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'), { prettyErrors: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message = code ? `cannot read ${file}: ${code}` : `not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`;
    throw new SpecError([{ path: '(file)', message }], file);
  }
  return validateTrain(raw, dirname(file), file);
}

/** One line per member in release order, for `rollgate validate`. */
export function describeTrain(t: TrainSpec): string {
  const order = releaseOrder(t.members);
  const lines = order.map((s) => {
    const m = t.members.find((x) => x.service === s)!;
    return `  ${s} ${m.spec.release}${m.dependsOn.length ? ` after ${m.dependsOn.join(', ')}` : ''} (${m.spec.targets.length} target(s), ${m.spec.waves.length} wave(s))`;
  });
  return [`train ${t.train}${t.lockstep ? ' (lockstep)' : ''}: ${order.join(' -> ')}`, ...lines].join('\n');
}
