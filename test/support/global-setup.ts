/**
 * Starts the real Temporal dev server and moto once for the whole suite and bundles the workflow
 * code once. Fails (never skips) with install instructions when a tool is missing.
 *
 * Two jest processes may run at once (CI runs the suite on two Node majors side by side,
 * scripts/test.sh): each has its own servers on free ports, and everything it writes is under its
 * own state dir, ROLLGATE_TEST_STATE_DIR (default .state/test; the Node 24 leg's is
 * .state/test-node24), the workflow bundle named by this process's pid in it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { startMoto, startTemporalDevServer } from '../../src/dev/processes';

const ROOT = resolve(__dirname, '..', '..');

/** A lost free-port race (another process bound the port between freePort() and the server's bind) is retried on a new port. */
async function retryPortRace<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (e) {
      if (attempt >= 3 || !/address already in use/i.test(String((e as Error).message))) throw e;
    }
  }
}

export default async function globalSetup(): Promise<void> {
  const stateDir = resolve(ROOT, process.env.ROLLGATE_TEST_STATE_DIR || join('.state', 'test'));
  mkdirSync(stateDir, { recursive: true });
  const [temporal, moto, bundle] = await Promise.all([
    retryPortRace(() => startTemporalDevServer({ dbFile: join(stateDir, `temporal-${process.pid}.db`) })),
    retryPortRace(() => startMoto()),
    bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: quietLogger }),
  ]);
  const bundlePath = join(stateDir, `workflow-bundle-${process.pid}.js`);
  writeFileSync(bundlePath, bundle.code);
  process.env.ROLLGATE_TEST_TEMPORAL = temporal.address;
  process.env.ROLLGATE_TEST_MOTO = moto.url;
  process.env.ROLLGATE_TEST_BUNDLE = bundlePath;
  process.env.ROLLGATE_TEST_STATE = stateDir;
  process.env.AWS_ACCESS_KEY_ID = 'testing';
  process.env.AWS_SECRET_ACCESS_KEY = 'testing';
  process.env.AWS_REGION = 'us-east-1';
  (globalThis as Record<string, unknown>).__ROLLGATE_SERVERS__ = [temporal, moto];
}

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: (m: string) => console.error(m), log: noop };
