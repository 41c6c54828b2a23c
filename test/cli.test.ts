/** The rollgate CLI against the real dev server: exit codes, --json shapes, operator commands. */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../src/cli/main';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, type Harness } from './support/harness';

let h: Harness;
beforeAll(async () => {
  h = await createHarness('cli');
  await h.startWorker();
  process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
});
afterAll(async () => h?.close());

async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  const l = jest.spyOn(console, 'log').mockImplementation((...a) => void (out += `${a.join(' ')}\n`));
  process.exitCode = undefined;
  try {
    const code = await main(args);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
    l.mockRestore();
    process.exitCode = undefined;
  }
}

test('operator workflow through the CLI', async () => {
  const base = lambdaSpec(h, 'cli-svc');
  const spec = { ...base, waves: base.waves.map((w, i) => (i === 0 ? { ...w, approval: true } : w)) };
  const file = join(h.workDir, 'cli-svc.json');
  writeFileSync(file, JSON.stringify(spec));
  await createFunctions(h, spec);
  const traffic = simulateTraffic(h, spec);
  try {
    expect(await run('validate', file)).toMatchObject({ code: 0, out: expect.stringContaining('ok (cli-svc r2, 3 target(s), 2 wave(s))') });
    const plan = await run('plan', file);
    expect(plan.code).toBe(0);
    expect(plan.out).toMatch(/wave:wave-1\s+wait for approval \(alice, bob\)/);
    expect(plan.out).toMatch(/minimum duration 5s \(bakes only; plus 1 approval\(s\)/);

    const started = await run('start', file, '--by', 'carol', '--task-queue', h.taskQueue, '--json');
    expect(started.code).toBe(0);
    const id = JSON.parse(started.out).id;
    expect(id).toBe('rollout-cli-svc');

    // Wait for the approval gate, reading status --json like a script would.
    let status: any;
    for (let i = 0; i < 200; i++) {
      const r = await run('status', id, '--json');
      expect(r.code).toBe(0);
      status = JSON.parse(r.out);
      if (status.awaitingApproval) break;
      await new Promise((res) => setTimeout(res, 150));
    }
    expect(status).toMatchObject({ id, service: 'cli-svc', release: 'r2', state: 'running', stage: 'wave:wave-1' });
    expect(status.targets[0]).toMatchObject({ name: 'us-east-1', stableVersion: '1', newVersion: '2', weight: 10 });
    for (const t of status.targets)
      expect(Object.keys(t)).toEqual(expect.arrayContaining(['name', 'stableVersion', 'newVersion', 'weight']));

    const refused = await run('approve', id, '--by', 'carol');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^rollgate: refused: carol is not an approver of cli-svc/);
    expect((await run('approve', id)).code).toBe(2); // missing --by

    expect((await run('pause', id, '--by', 'carol')).code).toBe(0);
    expect((await run('resume', id, '--by', 'carol')).code).toBe(0);
    expect(await run('approve', id, '--by', 'bob', '--comment', 'lgtm')).toMatchObject({
      code: 0,
      out: expect.stringContaining('approved wave wave-1'),
    });

    const watched = await run('watch', id, '--json', '--interval', '200');
    expect(watched.code).toBe(0);
    const lines = watched.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[lines.length - 1]).toMatchObject({ state: 'succeeded', stage: 'done' });

    const history = await run('history', id);
    expect(history.out).toMatch(/approval\s+bob approved wave wave-1: lgtm/);
    expect(history.out).toMatch(/operator\s+paused by carol/);

    let listed: any[] = [];
    for (let i = 0; i < 50 && listed.length === 0; i++) {
      listed = JSON.parse((await run('list', '--service', 'cli-svc', '--state', 'succeeded', '--json')).out);
      if (!listed.length) await new Promise((res) => setTimeout(res, 200));
    }
    expect(listed[0]).toMatchObject({ id, service: 'cli-svc', release: 'r2', state: 'succeeded', stage: 'done' });
    expect((await run('retry', id)).code).toBe(1);
  } finally {
    traffic.stop();
  }
});

test('errors: unknown rollout, bad state filter, unreadable spec', async () => {
  const r = await run('status', 'rollout-nope');
  expect(r).toMatchObject({ code: 1, err: 'rollgate: no rollout with id rollout-nope\n' });
  expect((await run('list', '--state', 'sleeping')).code).toBe(2);
  const missing = await run('validate', '/nonexistent.yaml');
  expect(missing.code).toBe(2);
  expect(missing.err).toMatch(/\(file\): cannot read \/nonexistent.yaml: ENOENT/);
});

test('the installed bin runs (npx rollgate)', () => {
  const r = spawnSync(process.execPath, [join(__dirname, '..', 'bin', 'rollgate.js'), '--help'], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  for (const cmd of [
    'validate',
    'start',
    'status',
    'approve',
    'reject',
    'pause',
    'resume',
    'abort',
    'worker',
    'plan',
    'watch',
    'list',
    'history',
    'retry',
  ])
    expect(r.stdout).toContain(cmd);
});
