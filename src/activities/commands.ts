/** Build, test and migration steps: shell commands whose output tail is kept for the operator. */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { RolloutSpec } from '../spec/schema';
import type { ArtifactRef } from '../providers/types';
import type { ActivityDeps } from './deps';

const TAIL = 1500;

export interface CommandResult {
  exitCode: number;
  tail: string;
  durationMs: number;
}

/** Run `bash -c command`, heartbeating; killed when the activity is cancelled. */
export function runShell(command: string, cwd: string | undefined, env: Record<string, string> = {}): Promise<CommandResult> {
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn('bash', ['-c', command], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (b: Buffer) => {
      out = (out + b.toString('utf8')).slice(-TAIL);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let ctx: Context | undefined;
    try {
      ctx = Context.current();
    } catch {
      ctx = undefined; // called outside an activity (CLI, tests)
    }
    const beat = ctx ? setInterval(() => ctx!.heartbeat(), 1000) : undefined;
    ctx?.cancelled.catch(() => child.kill('SIGTERM'));
    child.on('error', (err) => {
      if (beat) clearInterval(beat);
      reject(err);
    });
    child.on('close', (code, signal) => {
      if (beat) clearInterval(beat);
      resolvePromise({ exitCode: code ?? (signal ? 128 : 1), tail: out.trim(), durationMs: Date.now() - started });
    });
  });
}

export function commandActivities(deps: ActivityDeps) {
  return {
    /** Build once and record the digest; a retry of the same run finds the recorded build. */
    async buildArtifact(input: { artifact: RolloutSpec['artifact']; rolloutId: string; runId: string }): Promise<ArtifactRef> {
      const { artifact } = input;
      if (artifact.image && !artifact.build && !artifact.file) {
        return { digest: artifact.image.split('@sha256:')[1], image: artifact.image };
      }
      const store = join(deps.stateDir, 'artifacts');
      const records = join(deps.stateDir, 'builds');
      await mkdir(store, { recursive: true });
      await mkdir(records, { recursive: true });
      const record = join(records, `${input.rolloutId}-${input.runId}.json`.replace(/[^A-Za-z0-9._-]/g, '_'));
      if (existsSync(record)) {
        const done = JSON.parse(await readFile(record, 'utf8')) as ArtifactRef;
        if (done.path && existsSync(done.path)) return done;
      }
      let source: string;
      if (artifact.build) {
        const cwd = artifact.build.cwd;
        const res = await runShell(artifact.build.command, cwd);
        if (res.exitCode !== 0)
          throw ApplicationFailure.nonRetryable(`build command exited ${res.exitCode}: ${res.tail.slice(-500)}`, 'BuildFailed');
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
      const stored = join(store, `${digest}.zip`);
      if (!existsSync(stored)) {
        // A unique temp name: rollouts of several services may store the same artifact at once.
        const tmp = `${stored}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
        await copyFile(source, tmp);
        await rename(tmp, stored);
      }
      const ref: ArtifactRef = { digest, path: stored, image: artifact.image };
      await writeFile(record, JSON.stringify(ref));
      return ref;
    },

    async runStageCommand(input: { stage: string; command: string; cwd?: string; env?: Record<string, string> }): Promise<CommandResult> {
      const res = await runShell(input.command, input.cwd, input.env);
      if (res.exitCode !== 0)
        throw ApplicationFailure.nonRetryable(
          `${input.stage} command exited ${res.exitCode}: ${res.tail.slice(-500)}`,
          `${input.stage}Failed`,
        );
      return res;
    },

    /** The migration's report of the current schema revision (last non-empty output line). */
    async readSchemaRev(input: { command: string; cwd?: string }): Promise<string> {
      const res = await runShell(input.command, input.cwd);
      if (res.exitCode !== 0)
        throw ApplicationFailure.nonRetryable(`schema_rev command exited ${res.exitCode}: ${res.tail.slice(-300)}`, 'MigrationCheckFailed');
      const lines = res.tail
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
      return lines[lines.length - 1] ?? '';
    },
  };
}
