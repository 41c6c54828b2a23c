/**
 * The quick start's demo command runs end to end (fast bakes, exits instead of waiting for Ctrl-C):
 * a cross-cloud rollout over moto and the Cloud Run / Cloud Monitoring fakes.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

test('demo: cross-cloud r1 promoted, r2 breaches in the mixed wave and both clouds are reverted, a two-service train is released in order, everything stopped', async () => {
  const root = join(__dirname, '..');
  // Its own state dir (SQLite file, zips) in this jest process's: not the shared .state/demo (CI runs two jest processes at once).
  const state = join(process.env.ROLLGATE_TEST_STATE!, `demo-${randomBytes(3).toString('hex')}`);
  const args = ['--import', 'tsx', join(root, 'scripts', 'demo.ts'), '--exit', '--fast', '--port', '0', '--state', state];
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (out += b));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  expect(out).toMatch(/Cloud Run Admin API v2 fake listening on 127\.0\.0\.1:\d+/);
  expect(out).toMatch(/Cloud Monitoring fake listening on 127\.0\.0\.1:\d+/);
  expect(out).toContain('DEV/TEST FAKES');
  expect(out).toContain('runner polling task queue "rollgate-runner"');
  expect(out).toContain('release r1 finished: succeeded');
  expect(out).toMatch(/run-europe-west1: 1 probe\(s\) ok/);
  expect(out).toMatch(/eu-west-1, run-europe-west1 at 25 %/);
  expect(out).toMatch(/ap-southeast-2, run-us-central1 at 100 %/);
  expect(out).toContain('SIMULATED');
  expect(out).toMatch(/ALERT received by the demo webhook:\n\s+rollgate: checkout r2 rolled back after breach in wave:eu/);
  expect(out).toMatch(/compensation run-europe-west1: 100 % back on version checkout-r1/);
  expect(out).toMatch(/compensation eu-west-1: 100 % back on version 2/);
  expect(out).toContain('every touched target in both clouds is back on its previous version/revision');
  expect(out).toContain('release r2 rolled back and the pipeline of checkout is paused.');
  // The release train: orders (Lambda) promoted and held before payments (Cloud Run) starts, both released.
  expect(out).toMatch(/orders: held, payments: (pending|starting|running)/);
  expect(out).toContain('release train demo-train-t1 finished: succeeded');
  expect(out).toMatch(/orders-use1\s+lambda\s+us-east-1\/orders-fn:live -> version 2\n/);
  expect(out).toMatch(/payments-euw1\s+cloud-run demo-project\/europe-west1\/payments -> payments-t1 100 %\n/);
  expect(out).toMatch(/Temporal UI: http:\/\/127\.0\.0\.1:\d+/);
  expect(code).toBe(0);
}, 240_000);
