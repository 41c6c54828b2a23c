/**
 * Malformed specs are refused before anything starts and without a single provider call: the CLI
 * `start` against a live server and a counting proxy (the pure validation rules are in
 * spec-validation.unit.test.ts).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../src/cli/main';
import { RolloutRefusedError, startRollout } from '../src/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import { rolloutWorkflowId } from '../src/contract';
import { createHarness, lambdaSpec, type Harness } from './support/harness';
import { base, cases, type Spec } from './support/spec-cases';

/** The run of `rollout-SERVICE`, if one was started: describe() answers from the server's own record, or NotFound. */
async function startedRuns(h: Harness, service: string): Promise<string[]> {
  try {
    return [(await h.client.workflow.getHandle(rolloutWorkflowId(service)).describe()).runId];
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return [];
    throw err;
  }
}

describe('CLI start with a malformed spec', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness('specs');
    await h.startWorker();
  });
  afterAll(async () => h?.close());

  test('exits 2 for every malformed spec, starts nothing and calls no provider', async () => {
    const dir = join(h.workDir, 'specs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'fn.zip'), 'zip'); // the base spec's artifact.file exists: each case fails on its own problem
    process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      for (const [i, [, mutate, path]] of cases.entries()) {
        const spec = base() as Spec;
        spec.service = `bad-${i}`;
        mutate(spec);
        const file = join(dir, `bad-${i}.json`);
        writeFileSync(file, JSON.stringify(spec));
        stderr.mockClear();
        const code = await main(['start', file, '--task-queue', h.taskQueue, '--by', 'carol']);
        expect(code).toBe(2);
        expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toContain(`- ${path}: `);
      }
    } finally {
      stderr.mockRestore();
    }
    // Describe is strongly consistent (a list query lags): no rollout of any of these services exists.
    for (const i of cases.keys())
      expect({ service: `bad-${i}`, runs: await startedRuns(h, `bad-${i}`) }).toEqual({ service: `bad-${i}`, runs: [] });
    expect(h.proxy.calls).toHaveLength(0);
  });
});

describe('file checks and size refusals before anything starts', () => {
  let h: Harness;
  let dir: string;
  beforeAll(async () => {
    h = await createHarness('specfiles');
    await h.startWorker();
    dir = join(h.workDir, 'specs');
    mkdirSync(dir, { recursive: true });
    process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
  });
  afterAll(async () => h?.close());

  async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
    try {
      return { code: await main(args), out, err };
    } finally {
      o.mockRestore();
      e.mockRestore();
      process.exitCode = undefined;
    }
  }

  const workflowsOf = (service: string) => startedRuns(h, service);

  test('a nonexistent artifact.file is refused by validate and start, naming the field and the path', async () => {
    const spec = { ...base(), service: 'ghost-zip', artifact: { file: './build/missing.zip' } };
    const file = join(dir, 'ghost-zip.json');
    writeFileSync(file, JSON.stringify(spec));
    const resolved = join(dir, 'build', 'missing.zip');
    const v = await cli('validate', file);
    expect(v.code).toBe(2);
    expect(v.err).toContain(`- artifact.file: file not found: ./build/missing.zip (resolved to ${resolved})`);
    const s = await cli('start', file, '--task-queue', h.taskQueue, '--by', 'carol');
    expect(s.code).toBe(2);
    expect(s.err).toContain(`- artifact.file: file not found: ./build/missing.zip (resolved to ${resolved})`);
    // A folder is not a zip either.
    writeFileSync(join(dir, 'dir-zip.json'), JSON.stringify({ ...spec, artifact: { file: '.' } }));
    expect((await cli('validate', join(dir, 'dir-zip.json'))).err).toMatch(/- artifact\.file: \. \(resolved to .*\) is not a file/);
    // Once the file is there, the same spec validates.
    mkdirSync(join(dir, 'build'), { recursive: true });
    writeFileSync(resolved, 'zip bytes');
    expect(await cli('validate', file)).toMatchObject({ code: 0, out: expect.stringContaining('ok (ghost-zip r42') });
    expect(h.proxy.calls).toHaveLength(0);
    expect(await workflowsOf('ghost-zip')).toEqual([]);
  });

  test('artifact.sha256 that does not match the file is refused before anything starts', async () => {
    writeFileSync(join(dir, 'pinned.zip'), 'the real bytes');
    const digest = createHash('sha256').update('the real bytes').digest('hex');
    const wrong = createHash('sha256').update('other bytes').digest('hex');
    const file = join(dir, 'pinned.json');
    writeFileSync(file, JSON.stringify({ ...base(), service: 'pinned', artifact: { file: 'pinned.zip', sha256: wrong } }));
    const r = await cli('start', file, '--task-queue', h.taskQueue, '--by', 'carol');
    expect(r.code).toBe(2);
    expect(r.err).toContain(
      `- artifact.sha256: pinned.zip (resolved to ${join(dir, 'pinned.zip')}) has sha256 ${digest}, the spec pins ${wrong}`,
    );
    expect(await workflowsOf('pinned')).toEqual([]);
  });

  test('a 5 MB spec is refused by validate and start with the limit', async () => {
    writeFileSync(join(dir, 'fn.zip'), 'zip');
    const file = join(dir, 'huge.json');
    writeFileSync(file, JSON.stringify({ ...base(), service: 'huge', probes: [{ name: 'big', payload: 'x'.repeat(5 * 1024 * 1024) }] }));
    for (const cmd of ['validate', 'start']) {
      const r = await cli(cmd, file, ...(cmd === 'start' ? ['--task-queue', h.taskQueue, '--by', 'carol'] : []));
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/- \(root\): spec is 5\.0 MiB as JSON, over the limit of 256 KiB/);
    }
    expect(await workflowsOf('huge')).toEqual([]);
  });

  test('a start the server refuses for its size says so (not a bare "Failed to start Workflow")', async () => {
    // A spec that skipped validation (a program building its own input): the server refuses it.
    const spec = lambdaSpec(h, 'oversized', {}, 1);
    spec.probes = [{ name: 'big', payload: 'x'.repeat(5 * 1024 * 1024), timeout: '10 seconds', attempts: 1 }];
    // 2.5 MB: over the server's 2 MB payload limit (INVALID_ARGUMENT, answered at once). Over 4 MB,
    // gRPC's message limit answers RESOURCE_EXHAUSTED, which the SDK retries for ~40 s before the same message.
    spec.probes = [{ name: 'big', payload: 'x'.repeat(2.5 * 1024 * 1024), timeout: '10 seconds', attempts: 1 }];
    const err = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue }).catch((e) => e);
    expect(err).toBeInstanceOf(RolloutRefusedError);
    expect(err.message).toMatch(
      /^the Temporal server refused to start rollout-oversized: the request is over its payload size limit \(workflow input 25\d\d KiB; server said: Blob data size exceeds limit\.?\)\. Nothing was started\. Make the spec smaller \(`rollgate validate` allows 256 KiB\)/,
    );
    expect(await workflowsOf('oversized')).toEqual([]);
  });
});
