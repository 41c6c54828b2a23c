/**
 * Child process of test/worker-start.unit.test.ts: which Google Cloud packages are loaded after the
 * worker module is imported and its production dependencies built (depsFromEnv), then after the
 * first Cloud Run call and the first Cloud Monitoring read. Prints one JSON object.
 */
import { artifactStoreFromUrl } from '../../src/artifacts/store';
import { depsFromEnv } from '../../src/worker';
import type { CloudRunTargetSpec } from '../../src/spec/schema';

const GOOGLE = /[\\/]node_modules[\\/]((?:@google-cloud[\\/])?[^\\/]+)[\\/]/;
const loaded = () =>
  [
    ...new Set(
      Object.keys(require.cache)
        .map((k) => GOOGLE.exec(k)?.[1].replace('\\', '/'))
        .filter((p): p is string => !!p && (p.startsWith('@google-cloud/') || p === 'google-gax')),
    ),
  ].sort();

/** The other libraries loaded at first use: the S3 client (artifact store) and jose (identity tokens). */
const lazyOthers = () =>
  ['@aws-sdk/client-s3', 'jose'].filter((p) => Object.keys(require.cache).some((k) => k.includes(`/node_modules/${p}/`)));

async function main() {
  const afterImport = loaded();
  const othersAfterImport = lazyOthers();
  // Not host:port: the first call fails as soon as the client is made, after its library has loaded.
  const deps = depsFromEnv({
    ROLLGATE_CLOUD_RUN_ENDPOINT: 'no-port',
    ROLLGATE_CLOUD_MONITORING_ENDPOINT: 'no-port',
    ROLLGATE_STATE_DIR: '.state/test',
  });
  const afterDeps = loaded();
  const othersAfterDeps = lazyOthers();
  const target = { name: 'run', provider: 'cloud-run', project: 'p', region: 'europe-west1', service: 'svc' } as CloudRunTargetSpec;
  const cloudRunError = await deps.providers['cloud-run']!.readTraffic(target).then(
    () => '',
    (e: Error) => e.message,
  );
  const afterCloudRun = loaded();
  const monitoring = deps.metrics.find((m) => m.name === 'cloud-monitoring')!;
  const monitoringError = await monitoring
    .collect({ target, canaryVersion: 'svc-b', baselineVersion: 'svc-a', startMs: 0, endMs: 60_000 })
    .then(
      () => '',
      (e: Error) => e.message,
    );
  const afterMonitoring = loaded();
  // An s3:// store loads its client at its first call (here refused: nothing listens on port 9).
  const store = artifactStoreFromUrl('s3://lazy-bucket/p', '.state/test', {
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
  });
  const othersAfterStore = lazyOthers();
  const storeError = await store.has('0'.repeat(64)).then(
    () => '',
    (e: Error) => e.message,
  );
  const othersAfterStoreCall = lazyOthers();
  console.log(
    JSON.stringify({
      afterImport,
      afterDeps,
      cloudRunError,
      afterCloudRun,
      monitoringError,
      afterMonitoring,
      othersAfterImport,
      othersAfterDeps,
      othersAfterStore,
      storeError,
      othersAfterStoreCall,
    }),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
