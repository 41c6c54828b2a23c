/**
 * rollgate benchmarks on the local dev server and emulators. Prints a table and writes JSON.
 *
 *   npm run bench                  # everything, full sizes (several minutes)
 *   npm run bench -- --quick       # tiny sizes (the smoke run in the test suite)
 *   npm run bench -- --only overhead,breach --out /tmp/b.json
 *
 * Numbers on shared machines are noisy: medians over repeated runs; every comparison is a ratio
 * measured in the same run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { startMoto, startTemporalDevServer, type DevServer, type MotoServer } from '../src/dev/processes';
import { createSampleFunction, sampleZip, TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { FaultProxy } from '../src/dev/fault-proxy';
import { LambdaProvider } from '../src/providers/aws-lambda';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { createRollgateWorker } from '../src/worker';
import { startRollout } from '../src/client';
import { validateSpec } from '../src/spec/validate';
import type { LambdaTargetSpec, RolloutSpec } from '../src/spec/schema';
import type { ArtifactRef } from '../src/providers/types';
import { abortSignal, externalVerdictSignal, pauseSignal, statusQuery, type RolloutResult } from '../src/workflows/messages';
import { aliasOf } from './support';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const ONLY = argv.includes('--only') ? argv[argv.indexOf('--only') + 1].split(',') : undefined;
const OUT = argv.includes('--out') ? argv[argv.indexOf('--out') + 1] : join(__dirname, 'results', QUICK ? 'quick.json' : 'latest.json');
const ROOT = resolve(__dirname, '..');
const STATE = join(ROOT, '.state', 'bench');

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  target?: string;
  ok?: boolean;
}
const rows: Row[] = [];
function report(bench: string, metric: string, value: number, unit: string, target?: { op: '<=' | '>='; v: number }) {
  const ok = target ? (target.op === '<=' ? value <= target.v : value >= target.v) : undefined;
  rows.push({ bench, metric, value: Math.round(value * 100) / 100, unit, target: target ? `${target.op} ${target.v}` : undefined, ok });
  console.log(
    `  ${bench.padEnd(10)} ${metric.padEnd(42)} ${String(Math.round(value * 100) / 100).padStart(10)} ${unit.padEnd(6)} ${target ? `${target.op} ${target.v} ${ok ? 'ok' : 'MISSED'}` : ''}`,
  );
}

let temporal: DevServer;
let moto: MotoServer;
let proxy: FaultProxy;
let client: Client;
let nativeConnection: NativeConnection;
let bundlePath: string;

const REGIONS = [
  'us-east-1',
  'eu-west-1',
  'ap-southeast-2',
  'us-west-2',
  'eu-central-1',
  'ap-northeast-1',
  'sa-east-1',
  'ca-central-1',
  'eu-north-1',
  'ap-south-1',
];

function lambdaTargets(prefix: string, functions: number, regions: number): LambdaTargetSpec[] {
  const out: LambdaTargetSpec[] = [];
  for (let f = 0; f < functions; f++)
    for (const region of REGIONS.slice(0, regions))
      out.push({
        name: `${prefix}${f}-${region}`.slice(0, 63),
        provider: 'aws-lambda',
        region,
        function: `${prefix}${f}-fn`,
        alias: 'live',
      });
  return out;
}

let releaseCounter = 0;
function spec(
  service: string,
  targets: LambdaTargetSpec[],
  waves: string[][],
  steps: number[],
  bake: string,
  over: Record<string, unknown> = {},
): RolloutSpec {
  const release = `b${++releaseCounter}`;
  const zip = join(STATE, `${service}-${release}.zip`);
  writeFileSync(zip, sampleZip(`${service} ${release}`));
  return validateSpec({
    service,
    release,
    schema_rev: '1',
    artifact: { file: zip },
    targets,
    probes: [{ name: 'health', payload: { ping: 1 } }],
    canary: { targets: [targets[0].name], weight: 10, bake },
    waves: waves.map((ts, i) => ({ name: `w${i + 1}`, targets: ts, steps, bake })),
    rollback: { min_requests: 0, on_no_data: 'pass' },
    ...over,
  });
}

async function inProcessWorker(taskQueue: string, endpoint: string) {
  const worker = await createRollgateWorker({
    connection: nativeConnection,
    taskQueue,
    workflowBundlePath: bundlePath,
    deps: {
      providers: { 'aws-lambda': new LambdaProvider({ endpoint, credentials: TEST_CREDENTIALS }) },
      metrics: [new CloudWatchMetrics({ endpoint, credentials: TEST_CREDENTIALS })],
      stateDir: STATE,
      hashKey: 'bench',
      client,
    },
  });
  const run = worker.run();
  return async () => {
    worker.shutdown();
    await run;
  };
}

// ---- 1 + 4: orchestration overhead, history size ---------------------------------------------

async function benchOverhead() {
  console.log('1. orchestration overhead (reference rollout: 2 functions x 3 regions, canary + 3 waves x 3 steps, bakes 0, analysis on)');
  const targets = lambdaTargets('ref', 2, 3);
  for (const t of targets) await createSampleFunction(moto.url, t);
  const names = targets.map((t) => t.name);
  const waves = [names.slice(1, 3), names.slice(3, 5), names.slice(5)];
  const steps = [10, 50, 100];
  const stop = await inProcessWorker('bench-overhead', moto.url);
  const runs = QUICK ? 1 : 5;
  const wf: number[] = [];
  const script: number[] = [];
  let events = 0;
  // Transitions: 8 stages + 1 canary step + 9 wave steps.
  const transitions = 8 + 1 + waves.length * steps.length;
  try {
    // warm-up (bundle load, connections)
    await (
      await startRollout(client, spec('ref', targets, waves, steps, '0 seconds'), { startedBy: 'bench', taskQueue: 'bench-overhead' })
    ).result();
    for (let i = 0; i < runs; i++) {
      const s1 = spec('ref', targets, waves, steps, '0 seconds');
      const t0 = performance.now();
      const h = await startRollout(client, s1, { startedBy: 'bench', taskQueue: 'bench-overhead' });
      const res = (await h.result()) as RolloutResult;
      wf.push(performance.now() - t0);
      if (res.state !== 'succeeded') throw new Error(`reference rollout ${res.state}: ${res.reason}`);
      events = (await h.fetchHistory()).events!.length;
      const s2 = spec('ref', targets, waves, steps, '0 seconds');
      const t1 = performance.now();
      await plainScript(s2, waves, steps);
      script.push(performance.now() - t1);
    }
  } finally {
    await stop();
  }
  const w = median(wf);
  const s = median(script);
  report('overhead', 'rollout on Temporal (median)', w, 'ms');
  report('overhead', 'plain script, same calls (median)', s, 'ms');
  report('overhead', 'ratio Temporal / script', w / s, 'x', { op: '<=', v: 2 });
  report('overhead', `overhead per stage transition (${transitions})`, Math.max(0, w - s) / transitions, 'ms', { op: '<=', v: 20 });
  report('history', 'events per reference rollout', events, 'events', { op: '<=', v: 400 });
}

/** The same provider calls as the workflow, in the same order and parallelism, without Temporal. */
async function plainScript(s: RolloutSpec, waves: string[][], steps: number[]) {
  const p = new LambdaProvider({ endpoint: moto.url, credentials: TEST_CREDENTIALS });
  const m = new CloudWatchMetrics({ endpoint: moto.url, credentials: TEST_CREDENTIALS });
  const targets = s.targets as LambdaTargetSpec[];
  const byName = new Map(targets.map((t) => [t.name, t]));
  const artifact: ArtifactRef = { digest: createDigest(s.artifact.file!), path: s.artifact.file };
  const contract = { RELEASE_ID: s.release, SCHEMA_REV: s.schema_rev };
  const stable = new Map<string, string>();
  const next = new Map<string, string>();
  await Promise.all(
    targets.map(async (t) => {
      stable.set(t.name, (await p.readTraffic(t)).stableVersion);
      next.set(t.name, (await p.deployRevision(t, artifact, contract, 'script')).newVersion);
    }),
  );
  await Promise.all(
    targets.map(async (t) => {
      for (const probe of s.probes) await p.probe(t, next.get(t.name)!, probe);
      await Promise.all([p.fingerprint(t, stable.get(t.name)!, 'k'), p.fingerprint(t, next.get(t.name)!, 'k')]);
    }),
  );
  for (const t of targets) await m.preflight(t, stable.get(t.name)!);
  const step = async (names: string[], percent: number) => {
    await Promise.all(names.map((n) => p.setTraffic(byName.get(n)!, stable.get(n)!, next.get(n)!, percent)));
    const now = Date.now();
    await Promise.all(
      names.map((n) =>
        m.collect({
          target: byName.get(n)!,
          canaryVersion: next.get(n)!,
          baselineVersion: stable.get(n)!,
          startMs: now - 1000,
          endMs: now + 60_000,
        }),
      ),
    );
  };
  await step([targets[0].name], s.canary.weight);
  for (const w of waves) for (const pc of steps) await step(w, pc);
  await Promise.all(
    targets.map(async (t) => {
      await p.routeAll(t, next.get(t.name)!);
      await p.recordRelease(t, next.get(t.name)!, s.release, artifact.digest);
    }),
  );
}

function createDigest(path: string) {
  return require('node:crypto').createHash('sha256').update(readFileSync(path)).digest('hex') as string;
}

// ---- 2: breach to revert -----------------------------------------------------------------------

async function benchBreach() {
  console.log('2. breach to revert (10 targets mid-wave; breach delivered as a signal; until every target is 100 % on stable in moto)');
  const targets = lambdaTargets('brc', 1, 10);
  for (const t of targets) await createSampleFunction(moto.url, t);
  const stop = await inProcessWorker('bench-breach', moto.url);
  const runs = QUICK ? 2 : 20;
  const times: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const s = spec('brc', targets, [targets.slice(1).map((t) => t.name)], [50, 100], '1 hour', {
        canary: { targets: [targets[0].name], weight: 10, bake: '0 seconds' },
      });
      const h = await startRollout(client, s, { startedBy: 'bench', taskQueue: 'bench-breach' });
      for (;;) {
        const st = await h.query(statusQuery);
        if (st.stage === 'wave:w1' && st.bakeEndsAtMs) break;
        await sleep(50);
      }
      const stable = new Map((await h.query(statusQuery)).targets.map((t) => [t.name, t.stableVersion!]));
      const t0 = performance.now();
      await h.signal(externalVerdictSignal, { verdict: 'fail', reason: 'bench breach' });
      for (;;) {
        const states = await Promise.all(targets.map((t) => aliasOf(moto.url, t)));
        if (states.every((a, j) => a.version === stable.get(targets[j].name) && Object.keys(a.weights).length === 0)) break;
      }
      times.push(performance.now() - t0);
      await h.signal(abortSignal);
      await h.result();
    }
  } finally {
    await stop();
  }
  report('breach', `breach -> all 10 reverted, p50 (${times.length} runs)`, median(times), 'ms', { op: '<=', v: 250 });
  report('breach', 'breach -> all 10 reverted, p95', pct(times, 95), 'ms');
}

// ---- 3: parked rollouts ------------------------------------------------------------------------

function spawnWorker(env: Record<string, string>): Promise<{ child: ChildProcess; readyMs: number; spawnedAt: number }> {
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'worker-process.ts')], {
    cwd: ROOT,
    env: { ...process.env, BENCH_TEMPORAL: temporal.address, BENCH_STATE_DIR: STATE, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (b) => (err += b));
  return new Promise((res, rej) => {
    child.stdout!.on('data', (b: Buffer) => {
      const m = /worker ready (\d+)/.exec(b.toString());
      if (m) res({ child, readyMs: Number(m[1]), spawnedAt });
    });
    child.once('exit', (c) => rej(new Error(`bench worker exited ${c}: ${err}`)));
  });
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function benchParked() {
  const sizes = QUICK ? [10, 20] : [500, 1000, 2000];
  console.log(
    `3. parked rollouts (${sizes.join(', ')}) in a long bake on one worker (in-memory provider: measures the worker, not an emulator)`,
  );
  const { child } = await spawnWorker({
    BENCH_TASK_QUEUE: 'bench-parked',
    BENCH_PROVIDER: 'memory',
    BENCH_BUNDLE: bundlePath,
    BENCH_MAX_CACHED: String(sizes[sizes.length - 1] + 100),
  });
  const t = [{ name: 'mem', provider: 'aws-lambda', region: 'us-east-1', function: 'mem', alias: 'live' }] as LambdaTargetSpec[];
  const zip = join(STATE, 'parked.zip');
  writeFileSync(zip, sampleZip('parked'));
  const base = validateSpec({
    service: 'parked',
    release: 'p1',
    schema_rev: '1',
    artifact: { file: zip },
    targets: t,
    canary: { targets: ['mem'], weight: 10, bake: '2 hours' },
  });
  let started = 0;
  const ids: string[] = [];
  try {
    for (const n of sizes) {
      const todo = n - started;
      const t0 = performance.now();
      let next = started;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (next < n) {
            const i = next++;
            const targets = [{ ...t[0], function: `parked-${i}` }];
            const h = await startRollout(
              client,
              { ...base, service: `parked-${i}`, targets },
              { startedBy: 'bench', taskQueue: 'bench-parked' },
            );
            ids.push(h.workflowId);
          }
        }),
      );
      const rate = todo / ((performance.now() - t0) / 1000);
      started = n;
      // Parked = every rollout has reached its bake.
      const deadline = Date.now() + 600_000;
      for (;;) {
        const { count } = await client.workflow.count(
          `WorkflowType = 'rolloutWorkflow' AND RolloutStage = 'canary' AND TaskQueue = 'bench-parked'`,
        );
        if (count >= n || Date.now() > deadline) break;
        await sleep(500);
      }
      await sleep(1000);
      report('parked', `start rate while starting ${todo} (to ${n})`, rate, '/s', { op: '>=', v: 50 });
      report('parked', `worker RSS at ${n} parked`, rssMiB(child.pid!), 'MiB', n === 2000 ? { op: '<=', v: 1536 } : undefined);
    }
    const q: number[] = [];
    const s: number[] = [];
    for (let i = 0; i < 20; i++) {
      const h = client.workflow.getHandle(ids[Math.floor((i * ids.length) / 20)]);
      const t0 = performance.now();
      await h.query(statusQuery);
      q.push(performance.now() - t0);
      const t1 = performance.now();
      await h.signal(pauseSignal, { by: 'bench' });
      s.push(performance.now() - t1);
    }
    report('parked', `status query latency p50 at ${started}`, median(q), 'ms');
    report('parked', `pause signal latency p50 at ${started}`, median(s), 'ms');
  } finally {
    child.kill('SIGKILL');
  }
}

// ---- 5 + 6: crash to resume, cold start --------------------------------------------------------

async function benchCrash() {
  console.log('5. crash to resume (SIGKILL just before a bake ends; new worker start -> next activity starts)');
  const targets = lambdaTargets('crs', 1, 1);
  for (const tt of targets) await createSampleFunction(moto.url, tt);
  const runs = QUICK ? 1 : 3;
  const gaps: number[] = [];
  for (let i = 0; i < runs; i++) {
    let w = await spawnWorker({
      BENCH_TASK_QUEUE: 'bench-crash',
      BENCH_PROVIDER: 'emulators',
      BENCH_LAMBDA_ENDPOINT: proxy.url,
      BENCH_BUNDLE: bundlePath,
    });
    const s = spec('crs', targets, [], [100], '3 seconds');
    const h = await startRollout(client, s, { startedBy: 'bench', taskQueue: 'bench-crash' });
    let bakeEnd = 0;
    for (;;) {
      const st = await h.query(statusQuery);
      if (st.stage === 'canary' && st.bakeEndsAtMs) {
        bakeEnd = st.bakeEndsAtMs;
        break;
      }
      await sleep(30);
    }
    await sleep(Math.max(0, bakeEnd - Date.now() - 300));
    w.child.kill('SIGKILL');
    await new Promise((r) => w.child.once('exit', r));
    const killedAt = Date.now();
    const callsBefore = proxy.calls.length;
    w = await spawnWorker({
      BENCH_TASK_QUEUE: 'bench-crash',
      BENCH_PROVIDER: 'emulators',
      BENCH_LAMBDA_ENDPOINT: proxy.url,
      BENCH_BUNDLE: bundlePath,
    });
    const startWall = killedAt;
    for (;;) {
      if (proxy.calls.length > callsBefore) break;
      await sleep(10);
    }
    const gap = proxy.calls[callsBefore].atMs - startWall;
    gaps.push(gap);
    await h.result();
    w.child.kill('SIGKILL');
  }
  report('crash', 'new worker start -> next activity (median)', median(gaps), 'ms', { op: '<=', v: 2000 });
}

async function benchColdStart() {
  console.log('6. worker cold start (process spawn -> polling)');
  const runs = QUICK ? 1 : 5;
  const withBundle: number[] = [];
  const without: number[] = [];
  for (let i = 0; i < runs; i++) {
    const a = await spawnWorker({ BENCH_TASK_QUEUE: 'bench-cold', BENCH_PROVIDER: 'memory', BENCH_BUNDLE: bundlePath });
    withBundle.push(performance.now() - a.spawnedAt);
    a.child.kill('SIGKILL');
    if (i < (QUICK ? 1 : 2)) {
      const b = await spawnWorker({ BENCH_TASK_QUEUE: 'bench-cold', BENCH_PROVIDER: 'memory', BENCH_BUNDLE: '' });
      without.push(performance.now() - b.spawnedAt);
      b.child.kill('SIGKILL');
    }
  }
  report('coldstart', 'with prebuilt bundle (median)', median(withBundle), 'ms', { op: '<=', v: 1500 });
  report('coldstart', 'bundling at start (median)', median(without), 'ms');
}

async function main() {
  mkdirSync(STATE, { recursive: true });
  mkdirSync(join(__dirname, 'results'), { recursive: true });
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  [temporal, moto] = await Promise.all([startTemporalDevServer({}), startMoto()]);
  proxy = await new FaultProxy(moto.url).start();
  nativeConnection = await NativeConnection.connect({ address: temporal.address });
  client = new Client({ connection: await Connection.connect({ address: temporal.address }) });
  const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../src/workflows'), logger: new DefaultLogger('ERROR') });
  bundlePath = join(STATE, 'workflow-bundle.js');
  writeFileSync(bundlePath, bundle.code);
  const all: [string, () => Promise<void>][] = [
    ['overhead', benchOverhead],
    ['breach', benchBreach],
    ['parked', benchParked],
    ['crash', benchCrash],
    ['coldstart', benchColdStart],
  ];
  try {
    for (const [name, fn] of all) if (!ONLY || ONLY.includes(name)) await fn();
  } finally {
    await proxy.stop();
    await client.connection.close();
    await nativeConnection.close();
    await Promise.all([temporal.stop(), moto.stop()]);
  }
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
  writeFileSync(OUT, JSON.stringify({ at: new Date().toISOString(), quick: QUICK, machine, rows }, null, 2));
  console.log(`\nwrote ${OUT}`);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
