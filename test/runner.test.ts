/**
 * The runner split and the shared artifact store (issue 10, items 1-2), against the dev server and
 * moto (Lambda and S3): one runner with its own state folder builds and uploads to an s3:// store;
 * two deploy workers with their own, empty state folders deploy from it; refs recorded before the
 * store still deploy; a spec whose files the runner cannot see is refused naming the field.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetFunctionCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { startRollout } from '../src/client';
import { createRollgateWorker } from '../src/worker';
import { parseRunnerConcurrency } from '../src/runner';
import { createActivities, createRunnerActivities } from '../src/activities';
import { S3ArtifactStore } from '../src/artifacts/store';
import { lambdaOp } from '../src/dev/fault-proxy';
import { sampleZip, sha256Hex, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { validateSpec } from '../src/spec/validate';
import type { LambdaTargetSpec, RolloutSpec } from '../src/spec/schema';
import type { RolloutResult } from '../src/contract';
import { aliasState } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, type Harness } from './support/harness';

let h: Harness;
let s3: S3Client;
const bucket = `rollgate-artifacts-${randomBytes(3).toString('hex')}`;
const stores: S3ArtifactStore[] = [];
const store = () => {
  const s = new S3ArtifactStore(bucket, 'releases', { endpoint: h.motoUrl, credentials: TEST_CREDENTIALS, region: 'us-east-1' });
  stores.push(s);
  return s;
};
const dirs = (name: string) => {
  const d = join(h.workDir, name);
  mkdirSync(d, { recursive: true });
  return d;
};
const listing = (d: string): string[] => (existsSync(d) ? readdirSync(d, { recursive: true }).map(String).sort() : []);

beforeAll(async () => {
  h = await createHarness('runner', { runner: false });
  s3 = new S3Client({ endpoint: h.motoUrl, region: 'us-east-1', credentials: TEST_CREDENTIALS, forcePathStyle: true });
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
});
afterAll(async () => {
  s3?.destroy();
  for (const s of stores) s.close();
  await h?.close();
});

/** `rollgate runner` (src/cli/main.ts runner) in its own process; resolves once it polls. */
async function startRunnerProcess(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '..', 'src', 'cli', 'main.ts'), 'runner'], {
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: process.env.ROLLGATE_TEST_TEMPORAL!,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rollgate runner did not start: ${err}`)), 60_000);
    child.stderr!.on('data', (b: Buffer) => {
      err = (err + b.toString()).slice(-4000);
      if (err.includes('rollgate runner: polling task queue')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`rollgate runner exited ${code}: ${err}`));
    });
  });
  return child;
}

function stopProcess(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

function twoRegionSpec(service: string, over: Record<string, unknown>): RolloutSpec {
  const base = lambdaSpec(h, service, {}, 2); // us-east-1 (the bucket's region) and eu-west-1
  return validateSpec({ ...JSON.parse(JSON.stringify(base)), ...over });
}

async function functionCode(t: LambdaTargetSpec, version: string) {
  const lambda = new LambdaClient({ endpoint: h.motoUrl, region: t.region, credentials: TEST_CREDENTIALS });
  try {
    const f = await lambda.send(new GetFunctionCommand({ FunctionName: t.function, Qualifier: version }));
    return { location: f.Code?.Location ?? '', sha: f.Configuration?.CodeSha256 };
  } finally {
    lambda.destroy();
  }
}

test('`rollgate runner` builds and uploads; two deploy workers with empty state folders deploy from the S3 store', async () => {
  const runnerDir = dirs('runner-state');
  const [workerA, workerB] = [dirs('deploy-a'), dirs('deploy-b')];
  const checkout = dirs('checkout'); // the "repository" the runner builds from
  const zip = sampleZip('built by the runner');
  writeFileSync(join(checkout, 'src.zip'), zip);
  const envFile = join(checkout, 'test-env.json');
  // Two deploy workers on the same task queue, as two processes would be (one connection each).
  const deployers: { worker: Worker; run: Promise<void>; connection: NativeConnection }[] = [];
  let runner: ChildProcess | undefined;
  try {
    // `rollgate runner` as its own process, configured only by its environment (which holds secrets it must not pass on).
    runner = await startRunnerProcess({
      ROLLGATE_RUNNER_TASK_QUEUE: h.runnerTaskQueue,
      ROLLGATE_STATE_DIR: runnerDir,
      ROLLGATE_ARTIFACT_STORE: `s3://${bucket}/releases?region=us-east-1`,
      AWS_ENDPOINT_URL_S3: h.motoUrl,
      ROLLGATE_RUNNER_ENV_ALLOW: 'RUNNER_NPM_TOKEN',
      RUNNER_NPM_TOKEN: 'allowed',
      RUNNER_CLOUD_SECRET: 'never',
      TEMPORAL_API_KEY: '',
    });
    for (const [identity, stateDir] of [
      ['deploy-a', workerA],
      ['deploy-b', workerB],
    ]) {
      const connection = await NativeConnection.connect({ address: process.env.ROLLGATE_TEST_TEMPORAL! });
      const worker = await createRollgateWorker({
        connection,
        taskQueue: h.taskQueue,
        deps: { ...h.deps, stateDir, artifactStore: store() },
        workflowBundlePath: process.env.ROLLGATE_TEST_BUNDLE,
        workerOptions: { identity },
      });
      deployers.push({ worker, run: worker.run(), connection });
    }
    const spec = twoRegionSpec('shared-store', {
      artifact: { build: { command: ['cp', 'src.zip', 'out.zip'], output: 'out.zip', cwd: checkout, env: { BUILD_MODE: 'release' } } },
      test: { command: ['node', '-e', 'require("fs").writeFileSync(process.argv[1], JSON.stringify(process.env))', envFile] },
      // Explicit shell; it also wipes the runner's state folder before the deploy (a replaced container).
      migration: {
        command: 'echo "$ROLLGATE_SCHEMA_REV" > schema && rm -rf "$RUNNER_STATE"',
        current_command: 'cat schema',
        shell: true,
        cwd: checkout,
        env: { RUNNER_STATE: runnerDir },
      },
    });
    await createFunctions(h, spec);
    const traffic = simulateTraffic(h, spec);
    let res: RolloutResult;
    let handle: Awaited<ReturnType<typeof startRollout>>;
    try {
      handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
      res = (await handle.result()) as RolloutResult;
    } finally {
      traffic.stop();
    }
    expect(res.state).toBe('succeeded');
    const digest = sha256Hex(zip);
    expect(res.status.artifactDigest).toBe(digest);

    // The artifact is in the store under its digest; no deploy worker and no runner keeps a copy of it.
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: `releases/${digest}.zip` }));
    expect(existsSync(runnerDir)).toBe(false);
    expect([...listing(workerA), ...listing(workerB)].filter((f) => f.startsWith('artifacts'))).toEqual([]);

    // us-east-1 (the bucket's region): Lambda read the object itself (UpdateFunctionCode S3Bucket/S3Key).
    // eu-west-1: a copy fetched from the store, verified, sent as ZipFile. Both carry the built code.
    const [use1, euw1] = spec.targets as LambdaTargetSpec[];
    const codeSha = Buffer.from(digest, 'hex').toString('base64');
    const direct = await functionCode(use1, '2');
    expect(direct).toEqual({ location: expect.stringMatching(new RegExp(`/releases/${digest}\\.zip$`)), sha: codeSha });
    const copied = await functionCode(euw1, '2');
    expect(copied.sha).toBe(codeSha);
    expect(copied.location).not.toContain('releases/');
    const cached = [workerA, workerB].filter((d) => existsSync(join(d, 'artifact-cache', `${digest}.zip`)));
    expect(cached).toHaveLength(1);
    for (const t of spec.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });

    // Who ran what: commands on the runner only, deploys on the deploy workers only.
    const started = new Map<string, Set<string>>();
    const history = await handle!.fetchHistory();
    const scheduled = new Map<string, string>();
    for (const e of history.events ?? []) {
      if (e.activityTaskScheduledEventAttributes)
        scheduled.set(String(e.eventId), e.activityTaskScheduledEventAttributes.activityType!.name!);
      const s = e.activityTaskStartedEventAttributes;
      if (s) {
        const type = scheduled.get(String(s.scheduledEventId))!;
        if (!started.has(type)) started.set(type, new Set());
        started.get(type)!.add(s.identity!);
      }
    }
    const runnerIdentity = `${runner.pid}@${hostname()}`;
    for (const type of ['buildArtifact', 'runStageCommand', 'readSchemaRev']) expect([...started.get(type)!]).toEqual([runnerIdentity]);
    for (const id of started.get('deployRevision')!) expect(['deploy-a', 'deploy-b']).toContain(id);

    // The test command's whole environment: PATH, HOME, the allow-list, the contract; nothing else.
    const seen = JSON.parse(readFileSync(envFile, 'utf8')) as Record<string, string>;
    expect(Object.keys(seen).sort()).toEqual(['HOME', 'INDEX_HASH', 'PATH', 'RELEASE_ID', 'RUNNER_NPM_TOKEN', 'SCHEMA_REV']);
    expect(seen).toMatchObject({ RELEASE_ID: 'r2', SCHEMA_REV: '7', INDEX_HASH: 'idx-abc', RUNNER_NPM_TOKEN: 'allowed' });
  } finally {
    for (const d of deployers) {
      d.worker.shutdown();
      await d.run;
      await d.connection.close();
    }
    if (runner) await stopProcess(runner);
  }
});

test('refs recorded before the store (path only) still deploy: from the path, or by digest from the store when this worker lacks the file', async () => {
  const spec = lambdaSpec(h, 'legacy-ref', {}, 2);
  await createFunctions(h, spec);
  const [use1, euw1] = spec.targets as LambdaTargetSpec[];
  const contract = { RELEASE_ID: 'r2', SCHEMA_REV: '7' };

  // An old worker's local copy, as old histories carry it: { digest, path }.
  const oldZip = sampleZip('recorded before the store');
  const oldPath = join(dirs('old-worker/artifacts'), `${sha256Hex(oldZip)}.zip`);
  writeFileSync(oldPath, oldZip);
  const here = createActivities({ ...h.deps, stateDir: dirs('new-worker-1') });
  const a = await here.deployRevision({
    target: use1,
    artifact: { digest: sha256Hex(oldZip), path: oldPath },
    contract,
    rolloutId: 'rollout-legacy-ref',
  });
  expect(a).toEqual({ newVersion: '2', created: true });
  expect((await functionCode(use1, '2')).sha).toBe(Buffer.from(sha256Hex(oldZip), 'hex').toString('base64'));

  // Another machine: the recorded path does not exist here, the store has the digest (the runner put it there).
  const runner = createRunnerActivities({ stateDir: dirs('legacy-runner'), artifactStore: store() });
  const src = join(dirs('legacy-src'), 'fn.zip');
  writeFileSync(src, oldZip);
  await runner.buildArtifact({ artifact: { file: src }, rolloutId: 'rollout-legacy-ref', runId: 'run-1' });
  const elsewhere = createActivities({ ...h.deps, stateDir: dirs('new-worker-2'), artifactStore: store() });
  const b = await elsewhere.deployRevision({
    target: euw1,
    artifact: { digest: sha256Hex(oldZip), path: '/nonexistent/other-machine/.state/artifacts/x.zip' },
    contract,
    rolloutId: 'rollout-legacy-ref',
  });
  expect(b).toEqual({ newVersion: '2', created: true });
  expect((await functionCode(euw1, '2')).sha).toBe(Buffer.from(sha256Hex(oldZip), 'hex').toString('base64'));

  // Neither: a clear failure naming the digest and the store, no Lambda write.
  const before = h.proxy.calls.length;
  const nowhere = createActivities({ ...h.deps, stateDir: dirs('new-worker-3') });
  await expect(
    nowhere.deployRevision({
      target: euw1,
      artifact: { digest: 'f'.repeat(64), path: '/nonexistent/x.zip' },
      contract,
      rolloutId: 'rollout-legacy-ref',
    }),
  ).rejects.toThrow(/artifact sha256 f{64} is not available to this worker \(\/nonexistent\/x\.zip; store file:\/\//);
  expect(h.proxy.calls.slice(before).filter((c) => c.method !== 'GET' && lambdaOp.any(euw1.function)(c))).toEqual([]);
});

test('a spec whose files the runner cannot see is refused before anything runs, naming the field', async () => {
  try {
    await h.startRunner({ stateDir: dirs('refusing-runner') });
    await h.startWorker();
    const cases: [string, Record<string, unknown>, RegExp][] = [
      [
        'no-file',
        { artifact: { file: '/nonexistent/ci-host/dist/fn.zip' } },
        /^stage build failed: artifact\.file: file \/nonexistent\/ci-host\/dist\/fn\.zip does not exist on the runner/,
      ],
      [
        'no-cwd',
        { artifact: { build: { command: 'make zip', output: 'fn.zip', cwd: '/nonexistent/checkout' } } },
        /^stage build failed: artifact\.build\.cwd: folder \/nonexistent\/checkout does not exist on the runner/,
      ],
      [
        'no-test-cwd',
        { test: { command: 'npm test', cwd: '/nonexistent/tests' } },
        /^stage build failed: test\.cwd: folder \/nonexistent\/tests does not exist on the runner/,
      ],
    ];
    for (const [name, over, why] of cases) {
      const spec = validateSpec({ ...JSON.parse(JSON.stringify(lambdaSpec(h, `unseen-${name}`, {}, 1))), waves: [], ...over });
      await createFunctions(h, spec);
      const res = (await (await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue })).result()) as RolloutResult;
      expect(res).toMatchObject({ state: 'failed', status: { failedStage: 'build' } });
      expect(res.reason).toMatch(why);
      expect(res.reason).toMatch(/Spec paths resolve relative to the spec file's folder on the host that ran `rollgate start`/);
      expect(h.proxy.count((c) => c.method !== 'GET' && lambdaOp.any(`unseen-${name}-fn`)(c))).toBe(0);
    }
  } finally {
    await h.stopWorker();
    await h.stopRunner();
  }
});

test('`rollgate runner` runs at most ROLLGATE_RUNNER_CONCURRENCY commands at a time; the others wait their turn and pass', async () => {
  const log = join(dirs('concurrency'), 'spans.log');
  let runner: ChildProcess | undefined;
  const traffic: { stop(): void }[] = [];
  try {
    runner = await startRunnerProcess({
      ROLLGATE_RUNNER_TASK_QUEUE: h.runnerTaskQueue,
      ROLLGATE_STATE_DIR: dirs('concurrency-runner'),
      ROLLGATE_RUNNER_CONCURRENCY: '1',
    });
    await h.startWorker();
    const specs = [1, 2, 3].map((i) =>
      validateSpec({
        ...JSON.parse(JSON.stringify(lambdaSpec(h, `bounded-${i}`, {}, 1))),
        waves: [],
        // Each test command records when it started and ended (ms), holding the runner for 1 s.
        test: { command: `echo "start $(date +%s%3N)" >> ${log}; sleep 1; echo "end $(date +%s%3N)" >> ${log}`, shell: true },
      }),
    );
    for (const spec of specs) {
      await createFunctions(h, spec);
      traffic.push(simulateTraffic(h, spec));
    }
    const handles = await Promise.all(specs.map((spec) => startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue })));
    for (const handle of handles) expect(((await handle.result()) as RolloutResult).state).toBe('succeeded');
    // With one slot the three 1-second commands never overlap: every start comes after the previous end.
    const events = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[0]);
    expect(events).toEqual(['start', 'end', 'start', 'end', 'start', 'end']);
  } finally {
    for (const t of traffic) t.stop();
    runner?.kill('SIGTERM');
    await h.stopWorker();
  }
});

test('ROLLGATE_RUNNER_CONCURRENCY that is not a positive integer is refused naming the variable', () => {
  expect(() => parseRunnerConcurrency('0')).toThrow('ROLLGATE_RUNNER_CONCURRENCY must be a positive integer (got "0")');
  expect(() => parseRunnerConcurrency('two')).toThrow(/ROLLGATE_RUNNER_CONCURRENCY/);
  expect(parseRunnerConcurrency('3')).toBe(3);
  expect(parseRunnerConcurrency(undefined)).toBeGreaterThanOrEqual(2);
});

test('the worker registers no command activities; the runner only those', () => {
  const worker = Object.keys(createActivities(h.deps));
  const runner = Object.keys(createRunnerActivities({ stateDir: h.workDir }));
  expect(runner.sort()).toEqual(['buildArtifact', 'readSchemaRev', 'runStageCommand']);
  expect(worker.filter((n) => runner.includes(n))).toEqual([]);
});
