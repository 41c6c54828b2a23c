/**
 * The inputs of the runner's command activities, derived from the spec. Pure (no I/O), so the
 * workflow builds them (`buildInput`, `stageCommandInput`) and tests and tools share them.
 */
import { releaseContract } from '../contract/release';
import type { CommandLine } from './argv';
import type { RolloutSpec } from './schema';

/** Release metadata every command gets in its environment (same names as on the new revisions). */
export function contractEnv(spec: RolloutSpec): Record<string, string> {
  return { ...releaseContract(spec) };
}

/** A spec path the runner must see, named by its field (for the refusal message). */
export interface SpecPathCheck {
  field: string;
  path: string;
  kind: 'file' | 'dir';
}

/** Every path of the spec that the runner uses: refused before anything runs when it cannot see one. */
export function specPathChecks(spec: RolloutSpec): SpecPathCheck[] {
  const out: SpecPathCheck[] = [];
  if (spec.artifact.file) out.push({ field: 'artifact.file', path: spec.artifact.file, kind: 'file' });
  if (spec.artifact.build?.cwd) out.push({ field: 'artifact.build.cwd', path: spec.artifact.build.cwd, kind: 'dir' });
  if (spec.test?.cwd) out.push({ field: 'test.cwd', path: spec.test.cwd, kind: 'dir' });
  if (spec.migration?.cwd) out.push({ field: 'migration.cwd', path: spec.migration.cwd, kind: 'dir' });
  return out;
}

export interface BuildInput {
  artifact: RolloutSpec['artifact'];
  rolloutId: string;
  runId: string;
  /** Contract variables for the build command (RELEASE_ID, SCHEMA_REV, INDEX_HASH). */
  env?: Record<string, string>;
  /** Spec paths checked on the runner before the build (absent in inputs recorded before the runner split). */
  paths?: SpecPathCheck[];
}

export function buildInput(spec: RolloutSpec, rolloutId: string, runId: string): BuildInput {
  return { artifact: spec.artifact, rolloutId, runId, env: contractEnv(spec), paths: specPathChecks(spec) };
}

export interface StageCommandInput {
  stage: string;
  command: CommandLine;
  /** Run `bash -c command` (explicit in the spec). */
  shell?: boolean;
  cwd?: string;
  /** The spec's declared env plus the contract variables; the runner adds PATH, HOME and its allow-list. */
  env?: Record<string, string>;
  /** The spec field of `cwd`, for a refusal that names it. */
  cwdField?: string;
}

/** `test` and `migrate` run with runStageCommand; `schema-rev` (migration.current_command) with readSchemaRev. */
export function stageCommandInput(spec: RolloutSpec, stage: 'test' | 'migrate' | 'schema-rev'): StageCommandInput {
  if (stage === 'test') {
    const t = spec.test!;
    return { stage, command: t.command, shell: t.shell, cwd: t.cwd, cwdField: 'test.cwd', env: { ...t.env, ...contractEnv(spec) } };
  }
  const m = spec.migration!;
  return {
    stage,
    command: stage === 'migrate' ? m.command : m.current_command,
    shell: m.shell,
    cwd: m.cwd,
    cwdField: 'migration.cwd',
    env: { ...m.env, ...contractEnv(spec), ROLLGATE_SCHEMA_REV: spec.schema_rev },
  };
}
