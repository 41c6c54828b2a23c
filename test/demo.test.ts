/** The quick start's demo command runs end to end (fast bakes, exits instead of waiting for Ctrl-C). */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

test('demo: r1 promoted, r2 rolled back with a paused pipeline, everything stopped', async () => {
  const root = join(__dirname, '..');
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'demo.ts'), '--exit', '--fast', '--port', '0'], {
    cwd: root,
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (out += b));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  expect(out).toContain('release r1 finished: succeeded');
  expect(out).toMatch(/ALERT received by the demo webhook:\n\s+rollgate: checkout r2 rolled back after breach in canary/);
  expect(out).toContain('release r2 rolled back and the pipeline of checkout is paused.');
  expect(out).toMatch(/Temporal UI: http:\/\/127\.0\.0\.1:\d+/);
  expect(code).toBe(0);
}, 240_000);
