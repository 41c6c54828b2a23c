import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ZodIssue } from 'zod';
import { RolloutSpecSchema, type RolloutSpec } from './schema';

/** A spec problem, reported with the path of the field it concerns (e.g. `waves[1].steps`). */
export interface SpecProblem {
  path: string;
  message: string;
}

export class SpecError extends Error {
  constructor(
    readonly problems: SpecProblem[],
    readonly source = 'spec',
  ) {
    super(`${source} is invalid:\n${problems.map((p) => `  - ${p.path}: ${p.message}`).join('\n')}`);
    this.name = 'SpecError';
  }
}

export function formatPath(path: (string | number)[]): string {
  if (path.length === 0) return '(root)';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

function toProblems(issues: ZodIssue[]): SpecProblem[] {
  const out: SpecProblem[] = [];
  for (const issue of issues) {
    if (issue.code === 'invalid_union' && issue.unionErrors.length > 0) {
      out.push(...toProblems(issue.unionErrors.flatMap((e) => e.issues)));
      continue;
    }
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') message = `unknown field(s): ${issue.keys.join(', ')}`;
    if (issue.code === 'invalid_type' && issue.received === 'undefined') message = 'is required';
    else if (issue.code === 'invalid_type') message = `must be ${issue.expected}, got ${issue.received}`;
    out.push({ path: formatPath(issue.path), message });
  }
  return out;
}

/** Validate an already-parsed object. Returns the normalized spec (defaults filled in) or throws SpecError. */
export function validateSpec(raw: unknown, source = 'spec'): RolloutSpec {
  const res = RolloutSpecSchema.safeParse(raw);
  if (!res.success) throw new SpecError(toProblems(res.error.issues), source);
  return res.data;
}

/** Parse YAML or JSON text (JSON is YAML), then validate. */
export function parseSpecText(text: string, source = 'spec'): RolloutSpec {
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new SpecError([{ path: '(file)', message: `not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}` }], source);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new SpecError([{ path: '(root)', message: 'must be a mapping of fields' }], source);
  return validateSpec(raw, source);
}

export function loadSpecFile(file: string): RolloutSpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SpecError([{ path: '(file)', message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}` }], file);
  }
  return parseSpecText(text, file);
}

/** Resolve relative paths in the spec against the spec file's folder (the worker may run elsewhere). */
export function resolveSpecPaths(spec: RolloutSpec, baseDir: string): RolloutSpec {
  const abs = (p: string | undefined) => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(baseDir, p));
  const out: RolloutSpec = JSON.parse(JSON.stringify(spec));
  if (out.artifact.build) out.artifact.build.cwd = abs(out.artifact.build.cwd ?? '.');
  if (out.artifact.file) out.artifact.file = abs(out.artifact.file);
  if (out.test) out.test.cwd = abs(out.test.cwd ?? '.');
  if (out.migration) out.migration.cwd = abs(out.migration.cwd ?? '.');
  return out;
}
