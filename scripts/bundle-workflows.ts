/**
 * Prebuilds the workflow bundle the worker loads at start (ROLLGATE_WORKFLOW_BUNDLE), so a worker
 * (a container) starts polling in about a second instead of running webpack at every cold start.
 * The bundle includes the failure converter used with the payload codec (src/temporal/failure-converter.ts).
 *
 *   npx tsx scripts/bundle-workflows.ts [OUT]      (default dist/workflow-bundle.js)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

const ROOT = resolve(__dirname, '..');

export async function bundleWorkflows(out = resolve(ROOT, 'dist', 'workflow-bundle.js')): Promise<{ path: string; bytes: number }> {
  const noop = () => undefined;
  const { code } = await bundleWorkflowCode({
    workflowsPath: resolve(ROOT, 'src', 'workflows', 'index.ts'),
    failureConverterPath: resolve(ROOT, 'src', 'temporal', 'failure-converter.ts'),
    logger: { trace: noop, debug: noop, info: noop, warn: (m) => console.error(m), error: (m) => console.error(m), log: noop },
  });
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, code);
  return { path: out, bytes: Buffer.byteLength(code) };
}

if (require.main === module) {
  bundleWorkflows(process.argv[2] ? resolve(process.argv[2]) : undefined).then(
    ({ path, bytes }) => console.error(`workflow bundle: ${path} (${(bytes / 1024).toFixed(0)} KiB)`),
    (err) => {
      console.error(`bundle-workflows: ${(err as Error).message}`);
      process.exit(1);
    },
  );
}
