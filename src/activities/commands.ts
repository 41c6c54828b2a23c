/**
 * Build, test, migration and schema-rev commands: the runner's activities (`rollgate runner`, task
 * queue ROLLGATE_RUNNER_TASK_QUEUE). They hold no cloud or Temporal-admin credentials and give a
 * command nothing of the runner's own environment beyond PATH, HOME and an explicit allow-list.
 *
 * - A command is an argv list run without a shell (a string is split by src/spec/argv.ts), or
 *   `bash -c STRING` when the spec says `shell: true`.
 * - Its environment is exactly: PATH and HOME of the runner, the runner's allow-listed variables
 *   (ROLLGATE_RUNNER_ENV_ALLOW), the spec's declared `env`, and the contract variables (RELEASE_ID,
 *   SCHEMA_REV, INDEX_HASH; ROLLGATE_SCHEMA_REV for the migration).
 * - Output is kept as a bounded tail (TAIL characters; failure messages carry at most 500).
 * - The built or prebuilt zip goes to the shared artifact store (src/artifacts/store.ts).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { ArtifactRef } from '../providers/types';
import { commandArgv, type CommandLine } from '../spec/argv';
import type { BuildInput, SpecPathCheck, StageCommandInput } from '../spec/commands';
import { FileArtifactStore, type ArtifactStore } from '../artifacts/store';
import { redact, secrets } from '../security/redact';
import { imageDigest } from '../contract';

/** Characters of output kept per command (the end of it). */
export const TAIL = 1500;
/** Characters of that tail a failure message carries. */
export const FAILURE_TAIL = 500;

export interface CommandResult {
  exitCode: number;
  tail: string;
  durationMs: number;
}

export interface RunnerDeps {
  /** Build records (`builds/`); with the default file:// store also the artifacts. */
  stateDir: string;
  /** Where artifacts are uploaded (default file://<stateDir>/artifacts). */
  artifactStore?: ArtifactStore;
  /** Names of the runner's own variables that commands get (ROLLGATE_RUNNER_ENV_ALLOW). */
  envAllow?: string[];
  /** The runner's environment (default process.env): the source of PATH, HOME and the allow-listed values. */
  env?: NodeJS.ProcessEnv;
}

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

/** `ROLLGATE_RUNNER_ENV_ALLOW=NAME,NAME` as a list (blank entries dropped). */
export function parseEnvAllow(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * A command's whole environment: PATH and HOME from the runner, the runner's allow-listed
 * variables, then what the spec declared (its `env` and the contract). Nothing else of the runner's
 * environment (cloud credentials, TEMPORAL_API_KEY, codec and hash keys) reaches the command.
 */
export function commandEnvironment(o: {
  runnerEnv: NodeJS.ProcessEnv;
  allow?: string[];
  declared?: Record<string, string>;
}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of o.allow ?? []) {
    const v = o.runnerEnv[name];
    if (v !== undefined) env[name] = v;
  }
  Object.assign(env, o.declared ?? {});
  env.PATH = o.runnerEnv.PATH || DEFAULT_PATH;
  if (o.runnerEnv.HOME) env.HOME = o.runnerEnv.HOME;
  else delete env.HOME;
  return env;
}

/**
 * Keep the last `max` characters of a growing output, redacted. It holds some more than `max`
 * until the end, so a secret that straddles the cut is still whole when the redactor sees it.
 */
export class OutputTail {
  private text = '';
  constructor(private readonly max = TAIL) {}
  push(chunk: Buffer | string): void {
    this.text = (this.text + chunk.toString()).slice(-(this.max + 1024));
  }
  value(): string {
    return redact(this.text).slice(-this.max).trim();
  }
}

export class CommandNotFoundError extends Error {
  constructor(
    readonly program: string,
    readonly path: string,
  ) {
    super(`program "${program}" not found (PATH=${path})`);
    this.name = 'CommandNotFoundError';
  }
}

/**
 * Run argv (no shell unless argv is `bash -c ...`) in `cwd` with exactly `env`, heartbeating inside
 * an activity; the command's process group is ended when the activity is cancelled and once the
 * command itself exits (nothing it started outlives it).
 */
export function runCommand(argv: string[], cwd: string | undefined, env: Record<string, string>): Promise<CommandResult> {
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true, shell: false });
    const tail = new OutputTail();
    child.stdout.on('data', (b: Buffer) => tail.push(b));
    child.stderr.on('data', (b: Buffer) => tail.push(b));
    let ctx: Context | undefined;
    try {
      ctx = Context.current();
    } catch {
      ctx = undefined; // called outside an activity (tests, tools)
    }
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    const beat = ctx ? setInterval(() => ctx!.heartbeat(), 1000) : undefined;
    let settled = false;
    let hardKill: NodeJS.Timeout | undefined;
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      if (beat) clearInterval(beat);
      if (hardKill) clearTimeout(hardKill);
      fn();
    };
    ctx?.cancelled.catch(() => {
      killGroup('SIGTERM');
      hardKill = setTimeout(() => killGroup('SIGKILL'), 10_000);
      hardKill.unref();
    });
    child.on('error', (err: NodeJS.ErrnoException) =>
      done(() => reject(err.code === 'ENOENT' ? new CommandNotFoundError(argv[0], env.PATH ?? '') : err)),
    );
    child.on('exit', (code, signal) => {
      const exitCode = code ?? (signal ? 128 : 1);
      killGroup('SIGTERM'); // background children of the command
      // Output still in the pipes arrives before 'close'; a grandchild holding them open does not hold us.
      const grace = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        done(() => resolvePromise({ exitCode, tail: tail.value(), durationMs: Date.now() - started }));
      }, 2000);
      child.once('close', () => {
        clearTimeout(grace);
        done(() => resolvePromise({ exitCode, tail: tail.value(), durationMs: Date.now() - started }));
      });
    });
  });
}

/** The end of an output, redacted before it is cut (a cut secret would no longer match its known value). */
function lastChars(s: string, n: number): string {
  const clean = redact(s);
  return clean.length > n ? `…${clean.slice(-n)}` : clean;
}

/** Refuse, naming the field, a spec path the runner cannot see (before anything runs). */
async function checkVisible(checks: SpecPathCheck[]): Promise<void> {
  for (const c of checks) {
    const abs = resolve(c.path);
    let problem: string | undefined;
    try {
      const st = await stat(abs);
      if (c.kind === 'dir' && !st.isDirectory()) problem = `${abs} is not a folder on the runner`;
      if (c.kind === 'file' && !st.isFile()) problem = `${abs} is not a file on the runner`;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problem = `${c.kind === 'dir' ? 'folder' : 'file'} ${abs}${abs !== c.path ? ` (${c.path}, resolved against the runner's working folder)` : ''} ${
        code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`
      } on the runner`;
    }
    if (problem)
      throw ApplicationFailure.nonRetryable(
        `${c.field}: ${problem} (host ${hostname()}). Spec paths resolve relative to the spec file's folder on the host that ran \`rollgate start\`, ` +
          `and the runner uses them as they are: run the runner where that path exists (the same checkout or volume, at the same path)`,
        'SpecPathNotVisible',
      );
  }
}

function argvOf(what: string, command: CommandLine, shell: boolean | undefined): string[] {
  try {
    return commandArgv(command, shell);
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`${what}: ${(err as Error).message}`, 'InvalidCommand');
  }
}

export function commandActivities(deps: RunnerDeps) {
  const store = deps.artifactStore ?? new FileArtifactStore(join(deps.stateDir, 'artifacts'));
  const runnerEnv = deps.env ?? process.env;
  // Allow-listed values (NPM_TOKEN, ...) reach commands, so they may be printed: the redactor knows them.
  for (const name of deps.envAllow ?? []) secrets.addSecret(runnerEnv[name]);
  const envFor = (declared: Record<string, string> | undefined) => commandEnvironment({ runnerEnv, allow: deps.envAllow, declared });

  async function run(what: string, argv: string[], cwd: string | undefined, declared: Record<string, string> | undefined) {
    try {
      return await runCommand(argv, cwd, envFor(declared));
    } catch (err) {
      if (err instanceof CommandNotFoundError) throw ApplicationFailure.nonRetryable(`${what}: ${err.message}`, 'CommandNotFound');
      throw err;
    }
  }

  return {
    /** Build once (on the runner), put the zip in the artifact store; a retry of the same run finds the recorded build. */
    async buildArtifact(input: BuildInput): Promise<ArtifactRef> {
      const { artifact } = input;
      if (artifact.image && !artifact.build && !artifact.file) {
        return { digest: imageDigest(artifact.image)!, image: artifact.image }; // the schema checked it is pinned
      }
      await checkVisible(
        input.paths ?? [
          ...(artifact.file ? [{ field: 'artifact.file', path: artifact.file, kind: 'file' as const }] : []),
          ...(artifact.build?.cwd ? [{ field: 'artifact.build.cwd', path: artifact.build.cwd, kind: 'dir' as const }] : []),
        ],
      );
      const records = join(deps.stateDir, 'builds');
      await mkdir(records, { recursive: true });
      const record = join(records, `${input.rolloutId}-${input.runId}.json`.replace(/[^A-Za-z0-9._-]/g, '_'));
      if (existsSync(record)) {
        const done = JSON.parse(await readFile(record, 'utf8')) as ArtifactRef;
        if (done.location ? await store.has(done.digest) : done.path && existsSync(done.path)) return done;
      }
      let source: string;
      if (artifact.build) {
        const cwd = artifact.build.cwd;
        const argv = argvOf('artifact.build.command', artifact.build.command, artifact.build.shell);
        const res = await run('build command', argv, cwd, { ...artifact.build.env, ...input.env });
        if (res.exitCode !== 0)
          throw ApplicationFailure.nonRetryable(
            `build command exited ${res.exitCode}: ${lastChars(res.tail, FAILURE_TAIL)}`,
            'BuildFailed',
          );
        source = resolve(cwd ?? '.', artifact.build.output);
        if (!existsSync(source))
          throw ApplicationFailure.nonRetryable(`build output ${source} does not exist after the build`, 'BuildFailed');
      } else {
        source = resolve(artifact.file!);
        if (!existsSync(source)) throw ApplicationFailure.nonRetryable(`artifact.file ${source} does not exist`, 'ArtifactMissing');
      }
      const digest = createHash('sha256')
        .update(await readFile(source))
        .digest('hex');
      if (artifact.sha256 && artifact.sha256 !== digest)
        throw ApplicationFailure.nonRetryable(
          `artifact.sha256 mismatch: file has ${digest}, spec pins ${artifact.sha256}`,
          'ArtifactMismatch',
        );
      const stored = await store.put(digest, source);
      const ref: ArtifactRef = {
        digest,
        location: stored.location,
        ...(stored.region ? { locationRegion: stored.region } : {}),
        // Same machine: workers (and code that predates the store) may read the file directly.
        ...(store instanceof FileArtifactStore ? { path: store.pathOf(digest) } : {}),
        ...(artifact.image ? { image: artifact.image } : {}),
      };
      await writeFile(record, JSON.stringify(ref));
      return ref;
    },

    /** `test` and `migrate`: fails (not retried) on a non-zero exit, with a bounded tail of the output. */
    async runStageCommand(input: StageCommandInput): Promise<CommandResult> {
      if (input.cwd) await checkVisible([{ field: input.cwdField ?? `${input.stage}.cwd`, path: input.cwd, kind: 'dir' }]);
      const argv = argvOf(`${input.stage} command`, input.command, input.shell);
      const res = await run(`${input.stage} command`, argv, input.cwd, input.env);
      if (res.exitCode !== 0)
        throw ApplicationFailure.nonRetryable(
          `${input.stage} command exited ${res.exitCode}: ${lastChars(res.tail, FAILURE_TAIL)}`,
          `${input.stage}Failed`,
        );
      return res;
    },

    /** The migration's report of the current schema revision (last non-empty output line). */
    async readSchemaRev(input: Omit<StageCommandInput, 'stage'> & { stage?: string }): Promise<string> {
      if (input.cwd) await checkVisible([{ field: input.cwdField ?? 'migration.cwd', path: input.cwd, kind: 'dir' }]);
      const argv = argvOf('migration.current_command', input.command, input.shell);
      const res = await run('schema_rev command', argv, input.cwd, input.env);
      if (res.exitCode !== 0)
        throw ApplicationFailure.nonRetryable(
          `schema_rev command exited ${res.exitCode}: ${lastChars(res.tail, 300)}`,
          'MigrationCheckFailed',
        );
      const lines = res.tail
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
      return lines[lines.length - 1] ?? '';
    },
  };
}

export type RunnerActivities = ReturnType<typeof commandActivities>;
