/**
 * The worker's start loads no Google Cloud library: @google-cloud/run, @google-cloud/monitoring and
 * google-gax (the largest part of its module loading, docs/DEVELOPMENT.md "Worker start") load at
 * the first cloud-run call, so a worker that never sees a cloud-run target never loads them. In a
 * child process (test/support/google-loads.ts): the module cache is per process.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

test('importing the worker and building its dependencies loads no Google library, S3 client or jose; the first Cloud Run call, Monitoring read and S3 store call load theirs', async () => {
  const root = join(__dirname, '..');
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join(__dirname, 'support', 'google-loads.ts')], {
    cwd: root,
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    timeout: 120_000,
  });
  const r = JSON.parse(stdout.trim().split('\n').pop()!);
  expect(r.afterImport).toEqual([]);
  expect(r.afterDeps).toEqual([]);
  // The call fails as it did with the client made at once: the endpoint is not host:port.
  expect(r.cloudRunError).toMatch(/endpoint "no-port" must be host:port/);
  expect(r.afterCloudRun).toEqual(expect.arrayContaining(['@google-cloud/run', 'google-gax']));
  expect(r.afterCloudRun).not.toContain('@google-cloud/monitoring');
  expect(r.monitoringError).toMatch(/endpoint "no-port" must be host:port/);
  expect(r.afterMonitoring).toEqual(expect.arrayContaining(['@google-cloud/monitoring', '@google-cloud/run', 'google-gax']));
  // The S3 client and jose load at first use too (the file:// default store, no ROLLGATE_OIDC_*).
  expect(r.othersAfterImport).toEqual([]);
  expect(r.othersAfterDeps).toEqual([]);
  expect(r.othersAfterStore).toEqual([]);
  expect(r.storeError).toMatch(/cannot read s3:\/\/lazy-bucket\/p\/0+\.zip/);
  expect(r.othersAfterStoreCall).toEqual(['@aws-sdk/client-s3']);
}, 150_000);
