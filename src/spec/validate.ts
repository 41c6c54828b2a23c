import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
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

/** Each problem once: the branches of a union (e.g. `schema_rev`, a number or a string) report the same one each. */
function toProblems(issues: ZodIssue[]): SpecProblem[] {
  const seen = new Set<string>();
  return flattenIssues(issues).filter((p) => {
    const key = `${p.path}\0${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function flattenIssues(issues: ZodIssue[]): SpecProblem[] {
  const out: SpecProblem[] = [];
  for (const issue of issues) {
    if (issue.code === 'invalid_union' && issue.unionErrors.length > 0) {
      out.push(...flattenIssues(issue.unionErrors.flatMap((e) => e.issues)));
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

/**
 * Largest spec accepted, as serialized JSON (UTF-8 bytes). The spec travels in the workflow input,
 * and again in every status query answer and in the workflow's result (with up to 200 history
 * entries, the targets and the last verdicts). Temporal refuses any single payload over 2 MB by
 * default (`limit.blobSize.error`; it warns from 512 KB), and a refused *result* fails the workflow
 * task over and over instead of closing the rollout. 256 KiB leaves that result (and a status
 * answer) far below the warning threshold while being ~50 times what a large real spec needs
 * (a 100-target, 20-wave spec is about 16 KiB).
 */
export const MAX_SPEC_BYTES = 256 * 1024;
/** Files larger than this are not even parsed (a spec file may be bigger than its JSON: comments, whitespace). */
const MAX_SPEC_FILE_BYTES = 32 * 1024 * 1024;

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
}

function jsonBytes(v: unknown): number {
  try {
    return Buffer.byteLength(JSON.stringify(v) ?? '', 'utf8');
  } catch {
    return 0;
  }
}

/** The size problem of an oversized spec (naming its largest top-level fields), or undefined. */
export function specSizeProblem(spec: unknown): SpecProblem | undefined {
  const bytes = jsonBytes(spec);
  if (bytes <= MAX_SPEC_BYTES) return undefined;
  const largest =
    spec && typeof spec === 'object'
      ? Object.entries(spec as Record<string, unknown>)
          .map(([k, v]) => [k, jsonBytes(v)] as const)
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([k, n]) => `${k} ${kib(n)}`)
          .join(', ')
      : '';
  return {
    path: '(root)',
    message: `spec is ${kib(bytes)} as JSON, over the limit of ${kib(MAX_SPEC_BYTES)} (it travels in the Temporal workflow input, status and result; the server refuses payloads over 2 MB)${
      largest ? `; largest fields: ${largest}` : ''
    }`,
  };
}

/** Validate an already-parsed object. Returns the normalized spec (defaults filled in) or throws SpecError. */
export function validateSpec(raw: unknown, source = 'spec'): RolloutSpec {
  const res = RolloutSpecSchema.safeParse(raw);
  if (!res.success) {
    const size = specSizeProblem(raw);
    throw new SpecError([...(size ? [size] : []), ...toProblems(res.error.issues)], source);
  }
  const size = specSizeProblem(res.data);
  if (size) throw new SpecError([size], source);
  return res.data;
}

/**
 * Checks that need the file system, run by `validate` and `start` (via loadSpecFile) before
 * anything starts: a prebuilt `artifact.file` must exist (relative paths against `baseDir`, the spec
 * file's folder) and match `artifact.sha256` when that pins it. Without this the rollout would
 * start and then fail at its build stage, recorded as a failed rollout of the service.
 */
export function checkSpecFiles(spec: RolloutSpec, baseDir: string): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const file = spec.artifact.file;
  if (file !== undefined) {
    const abs = isAbsolute(file) ? file : resolve(baseDir, file);
    const shown = abs === file ? file : `${file} (resolved to ${abs})`;
    let isFile = false;
    try {
      const st = statSync(abs);
      isFile = st.isFile();
      if (!isFile) problems.push({ path: 'artifact.file', message: `${shown} is not a file` });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push({
        path: 'artifact.file',
        message: code === 'ENOENT' ? `file not found: ${shown}` : `cannot read ${shown}: ${code ?? (err as Error).message}`,
      });
    }
    if (isFile && spec.artifact.sha256) {
      let digest: string | undefined;
      try {
        digest = createHash('sha256').update(readFileSync(abs)).digest('hex');
      } catch (err) {
        problems.push({ path: 'artifact.file', message: `cannot read ${shown}: ${(err as NodeJS.ErrnoException).code ?? err}` });
      }
      if (digest && digest !== spec.artifact.sha256)
        problems.push({ path: 'artifact.sha256', message: `${shown} has sha256 ${digest}, the spec pins ${spec.artifact.sha256}` });
    }
  }
  return problems;
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

/**
 * Read, parse and validate a spec file. With `checkFiles` (the default; `validate` and `start`),
 * also the file-system checks of checkSpecFiles, relative to the spec file's folder.
 */
export function loadSpecFile(file: string, opts: { checkFiles?: boolean } = {}): RolloutSpec {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_SPEC_FILE_BYTES)
      throw new SpecError(
        [{ path: '(file)', message: `${file} is ${kib(size)}; a spec must be at most ${kib(MAX_SPEC_BYTES)} as JSON` }],
        file,
      );
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof SpecError) throw err;
    throw new SpecError([{ path: '(file)', message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}` }], file);
  }
  const spec = parseSpecText(text, file);
  if (opts.checkFiles ?? true) {
    const problems = checkSpecFiles(spec, dirname(file));
    if (problems.length) throw new SpecError(problems, file);
  }
  return spec;
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
