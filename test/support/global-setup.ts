/**
 * Starts the real Temporal dev server and moto once for the whole suite and bundles the workflow
 * code once. Fails (never skips) with install instructions when a tool is missing.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { startMoto, startTemporalDevServer } from '../../src/dev/processes';

export default async function globalSetup(): Promise<void> {
  const stateDir = resolve(__dirname, '..', '..', '.state', 'test');
  mkdirSync(stateDir, { recursive: true });
  const [temporal, moto, bundle] = await Promise.all([
    startTemporalDevServer({ dbFile: join(stateDir, `temporal-${process.pid}.db`) }),
    startMoto(),
    bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: quietLogger }),
  ]);
  const bundlePath = join(stateDir, 'workflow-bundle.js');
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
