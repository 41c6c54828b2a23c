/** A quick smoke run of the benchmark command (tiny sizes): it must run end to end and print its table. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

test('npm run bench -- --quick runs every benchmark and writes JSON', async () => {
  const root = join(__dirname, '..');
  const out = join(process.env.ROLLGATE_TEST_STATE!, 'bench-quick.json');
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'bench', 'run.ts'), '--quick', '--out', out], {
    cwd: root,
    // Its own state dir in this jest process's (not the shared .state/bench: CI runs two jest processes at once).
    env: {
      ...process.env,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      BENCH_STATE_DIR: join(process.env.ROLLGATE_TEST_STATE!, 'bench'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (b) => (log += b));
  child.stderr.on('data', (b) => (log += b));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  if (code !== 0) throw new Error(`bench exited ${code}:\n${log.slice(-3000)}`);
  const result = JSON.parse(readFileSync(out, 'utf8'));
  const benches = new Set(result.rows.map((r: { bench: string }) => r.bench));
  expect([...benches].sort()).toEqual(['alert', 'breach', 'coldstart', 'crash', 'fleet', 'history', 'overhead', 'parked', 'sticky']);
  for (const r of result.rows) expect(Number.isFinite(r.value)).toBe(true);
  expect(result.machine.cpus).toBeGreaterThan(0);
}, 600_000);
