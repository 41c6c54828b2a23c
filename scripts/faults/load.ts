/**
 * Load with breaches (issue 9 part D):
 *
 *   npm run faults -- --load N [--breach-share 0.1] [--seed S] [--json] [--cloud-run-share 0.3] [--in-process]
 *
 * N concurrent rollouts on ONE rollgate worker (a child process unless --in-process), one dev
 * server, one moto (behind one fault proxy), one Cloud Run fake. Each rollout is its own service
 * with 2-3 targets (Lambda and Cloud Run), a canary and one wave, short bakes, no approvals. A
 * seeded share of them breaches mid-wave: the moment the traffic simulator first sees new traffic
 * on one of its wave targets, the new version starts failing 30 % of requests on every target.
 *
 * Checked from the emulators, never from the workflow's status:
 * - breached: every target 100 % on its stable version (moto GetAlias; the fake's served and asked
 *   traffic, no canary tag), and a revert write was observed on every target it had shifted;
 * - healthy: every target 100 % on the new version, and no revert write ever (alias updates back to
 *   the stable version seen by the fault proxy, traffic-only Cloud Run updates to 100 % stable);
 * - at most one new version / revision per target.
 * Measured: breach (bad error rate switched on) to revert (the last revert write of the rollout,
 * as the proxy / the fake saw it) p50 / p99, wall time, start rate, worker RSS.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import type { WorkerOptions } from '@temporalio/worker';
import { CreateAliasCommand, CreateFunctionCommand, LambdaClient, PublishVersionCommand } from '@aws-sdk/client-lambda';
import { startRollout } from '../../src/client';
import { lambdaOp } from '../../src/dev/fault-proxy';
import { ensureRole, sampleZip, TEST_CREDENTIALS } from '../../src/dev/lambda-fixtures';
import { BatchedLambdaTraffic, DirectCloudRunTraffic } from '../../src/dev/load-traffic';
import { validateSpec } from '../../src/spec/validate';
import type { CloudRunTargetSpec, LambdaTargetSpec, RolloutSpec, TargetSpec } from '../../src/spec/schema';
import { abortSignal, statusQuery, type HistoryEntry, type RolloutResult } from '../../src/contract';
import { Rng } from './prng';
import { imageFor, PROJECT } from './spec-gen';
import { FAULTS_WEBHOOK_ENV, ScheduleEnv, type Shared } from './env';
import { checkOneVersion, checkPromoted, checkStable, describeTarget, type Violation } from './invariants';
import { addTimeouts, noTimeouts, stallAfterKill, timeoutsIn, type Phases, type TimeoutCounts } from './failover';

export interface LoadOptions {
  rollouts: number;
  /** Share of the rollouts (seeded choice) whose new version breaches mid-wave. */
  breachShare: number;
  seed: number;
  /** Probability that a target is a Cloud Run service (else Lambda). */
  cloudRunShare: number;
  /** Worker in this process (no RSS of its own) instead of a child process. */
  inProcess: boolean;
  /** Every rollout must have closed by then (ms from the first start; 0: loadTimeoutMs). */
  timeoutMs: number;
  workerOptions: Partial<WorkerOptions>;
  /**
   * Fleet failover (issue 12 item 5): run `workers` deploy workers (child processes) on the task
   * queue and SIGKILL the first one `killAfterMs` after the last start; the others take over.
   */
  fleet?: { workers: number; killAfterMs: number };
  log?: (line: string) => void;
}

export const DEFAULT_LOAD_OPTIONS: Omit<LoadOptions, 'rollouts' | 'workerOptions'> = {
  breachShare: 0.1,
  seed: 1,
  cloudRunShare: 0.5,
  inProcess: false,
  timeoutMs: 0,
};

/** Default deadline for every rollout to close: 10 minutes, or 3 s per rollout when more. */
export const loadTimeoutMs = (n: number) => Math.max(10 * 60_000, n * 3_000);

/**
 * Worker tuning for N concurrent rollouts on a small machine, through createRollgateWorker's
 * workerOptions (production defaults unchanged): every rollout stays cached (no replays), activities
 * are I/O-bound waits (provider calls, operation polls, bakes' analyses) so many run at once, and a
 * sticky task queued behind a busy worker is not moved to the normal queue after 2 s (which would
 * be a cache miss and a full replay, more load exactly when the worker is behind).
 */
export function loadWorkerOptions(n: number): Partial<WorkerOptions> {
  return {
    maxCachedWorkflows: n + 100,
    maxConcurrentWorkflowTaskExecutions: 40,
    maxConcurrentActivityTaskExecutions: Math.min(400, Math.max(100, n)),
    maxConcurrentLocalActivityExecutions: 50,
    maxConcurrentWorkflowTaskPolls: 4,
    maxConcurrentActivityTaskPolls: 8,
    stickyQueueScheduleToStartTimeout: '30 seconds',
  };
}

/**
 * Fleet failover: the load tuning, but with the production sticky-queue timeout (createRollgateWorker's
 * default): a dead worker's sticky tasks must move to a live worker quickly, which is what is measured.
 */
export function fleetWorkerOptions(n: number): Partial<WorkerOptions> {
  const { stickyQueueScheduleToStartTimeout: _load, ...rest } = loadWorkerOptions(n);
  return rest;
}

/** Spread over many regions: moto keeps CloudWatch data per region and scans it on every query. */
const LAMBDA_REGIONS = [
  'us-east-1',
  'us-east-2',
  'us-west-1',
  'us-west-2',
  'eu-west-1',
  'eu-west-2',
  'eu-west-3',
  'eu-central-1',
  'eu-north-1',
  'ap-southeast-1',
  'ap-southeast-2',
  'ap-northeast-1',
  'ap-northeast-2',
  'ap-south-1',
  'ca-central-1',
  'sa-east-1',
];
const RUN_REGIONS = ['europe-west1', 'us-central1', 'asia-east1', 'europe-north1', 'us-east4', 'australia-southeast1'];
const HEALTHY_ERROR_RATE = 0.001;
const BREACH_ERROR_RATE = 0.3;

interface Rollout {
  index: number;
  service: string;
  spec: RolloutSpec;
  shape: string;
  breached: boolean;
  waveTargets: Set<string>;
  stable: Record<string, string>;
  handle?: WorkflowHandle;
  startedAtMs?: number;
  /** The bad error rate was first served (breached rollouts). */
  breachOnMs?: number;
  /** Per target: first write that moved traffic to the new version. */
  forward: Map<string, number>;
  /** Per target: every write that put it back to 100 % on stable, with its time. */
  reverts: Map<string, number[]>;
  abortSentMs?: number;
  /** How it stopped, when it waited for an operator (from its status; liveness, not the verdict). */
  note?: string;
  closed?: { state: string; atMs: number; reason?: string; history?: HistoryEntry[] };
  violations: Violation[];
}

export interface LoadRolloutRow {
  index: number;
  service: string;
  breached: boolean;
  shape: string;
  outcome: string;
  breachToRevertMs?: number;
  violations: Violation[];
  /** What each target serves now (only for rollouts with a violation). */
  emulators: string[];
  /** Only for rollouts with a violation: the rollout's own account of what made it stop (its last decisions before the rollback stage). */
  why: string[];
}

export interface LoadSummary {
  rollouts: number;
  breached: number;
  lambdaTargets: number;
  cloudRunTargets: number;
  outcomes: Record<string, number>;
  wallMs: number;
  startRatePerS: number;
  breachToRevertMs: { n: number; p50?: number; p99?: number; max?: number };
  workerRssMaxMb?: number;
  workerRss: string;
  /** Fleet failover: when the first worker was killed, how many rollouts were open then, their stalls (see failover.ts). */
  fleet?: {
    workers: number;
    killedAfterMs: number;
    openAtKill: number;
    stallMs: { p50?: number; p99?: number; max?: number };
    worst: string[];
  };
  /**
   * Timeouts in every rollout's history (failover.ts `timeoutsIn`): those of a live worker (not within
   * 10 s after the kill) are the price of short workflow task and heartbeat timeouts under load.
   */
  timeouts: TimeoutCounts;
  simulator: { lambdaTicks: number; cloudRunTicks: number; metricPuts: number };
  /** Provider calls the worker made: Lambda API through the fault proxy, Cloud Run Admin API on the fake. */
  apiCalls: { lambda: number; cloudRun: number };
  violations: number;
  rows: LoadRolloutRow[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function inLanes<T>(xs: T[], lanes: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(lanes, xs.length)) }, async () => {
      while (next < xs.length) await fn(xs[next++]);
    }),
  );
}

/** Nearest-rank percentile. */
export function percentile(xs: number[], p: number): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

function planRollouts(o: LoadOptions, token: string, env: ScheduleEnv): Rollout[] {
  const rng = new Rng(o.seed);
  const breached = new Set(
    rng.sample(
      Array.from({ length: o.rollouts }, (_, i) => i),
      Math.round(o.rollouts * o.breachShare),
    ),
  );
  const out: Rollout[] = [];
  for (let index = 0; index < o.rollouts; index++) {
    const service = `ld${index}-${token}`;
    const targets: TargetSpec[] = Array.from({ length: rng.int(2, 3) }, (_, i) =>
      rng.chance(o.cloudRunShare)
        ? { name: `${service}-c${i}`, provider: 'cloud-run', project: PROJECT, region: rng.pick(RUN_REGIONS), service: `${service}-c${i}` }
        : {
            name: `${service}-l${i}`,
            provider: 'aws-lambda',
            region: rng.pick(LAMBDA_REGIONS),
            function: `${service}-l${i}`,
            alias: 'live',
          },
    );
    const [canaryTarget, ...rest] = targets.map((t) => t.name);
    const zip = join(env.workDir, `${service}.zip`);
    writeFileSync(zip, sampleZip(`${service} r2`));
    const spec = validateSpec({
      service,
      release: 'r2',
      schema_rev: '7',
      index_hash: 'idx-load',
      artifact: { file: zip, image: imageFor(service, 'r2') },
      targets,
      // A loaded moto answers a Lambda invoke slowly: a probe timing out is not what this run measures.
      probes: [{ name: 'health', payload: { ping: true }, path: '/ping', expect_contains: 'ping', timeout: '60 seconds' }],
      canary: { targets: [canaryTarget], weight: rng.pick([10, 20, 25]), bake: '2 seconds' },
      waves: [{ name: 'w1', targets: rest, steps: [rng.pick([25, 50]), 100], bake: '2 seconds', approval: false }],
      // Under load a tick of simulated traffic can be late: extend a bake without data rather than fail it.
      rollback: { max_error_rate_increase_pp: 2, min_requests: 5, max_extensions: 6 },
      approvers: ['alice', 'bob'],
      notify: { webhook_env: FAULTS_WEBHOOK_ENV },
    });
    const kinds = targets.map((t) => (t.provider === 'aws-lambda' ? 'l' : 'c')).join('');
    out.push({
      index,
      service,
      spec,
      shape: `${kinds} canary ${spec.canary.weight}% w1 ${spec.waves[0].steps.join('/')}`,
      breached: breached.has(index),
      waveTargets: new Set(rest),
      stable: {},
      forward: new Map(),
      reverts: new Map(),
      violations: [],
    });
  }
  return out;
}

/** Lambda functions at version 1 behind alias `live` (shared SDK clients), Cloud Run services on one revision. */
async function seedEmulators(env: ScheduleEnv, rollouts: Rollout[]): Promise<void> {
  const moto = env.shared.motoUrl;
  await ensureRole(moto);
  const clients = new Map<string, LambdaClient>();
  const client = (region: string) => {
    let c = clients.get(region);
    if (!c) clients.set(region, (c = new LambdaClient({ endpoint: moto, region, credentials: TEST_CREDENTIALS })));
    return c;
  };
  const lambdas: [Rollout, LambdaTargetSpec][] = [];
  for (const r of rollouts)
    for (const t of r.spec.targets) {
      if (t.provider === 'aws-lambda') lambdas.push([r, t]);
      else {
        const svc = env.cloudRun.seedService({
          project: t.project,
          region: t.region,
          service: t.service,
          image: imageFor(t.service, 'r1'),
          env: { RELEASE_ID: 'initial', SCHEMA_REV: '0', LOG_LEVEL: 'info' },
          secretEnv: { DB_PASSWORD: ['db-password', '3'] },
        });
        r.stable[t.name] = String(svc.latestReadyRevision).split('/').pop()!;
      }
    }
  await inLanes(lambdas, 8, async ([r, t]) => {
    const c = client(t.region);
    await c.send(
      new CreateFunctionCommand({
        FunctionName: t.function,
        Runtime: 'nodejs20.x',
        Role: 'arn:aws:iam::123456789012:role/rollgate-sample',
        Handler: 'index.handler',
        Code: { ZipFile: sampleZip(`${t.function} v1`) },
        Environment: { Variables: { RELEASE_ID: 'initial', SCHEMA_REV: '0', DB_PASSWORD: 's3cret-value', LOG_LEVEL: 'info' } },
      }),
    );
    const v = await c.send(new PublishVersionCommand({ FunctionName: t.function }));
    await c.send(new CreateAliasCommand({ FunctionName: t.function, Name: t.alias, FunctionVersion: v.Version! }));
    r.stable[t.name] = v.Version!;
  });
  for (const c of clients.values()) c.destroy();
  for (const r of rollouts) Object.assign(env.stable, r.stable);
}

function rssMb(pid: number | undefined): number | undefined {
  if (pid === undefined) return process.memoryUsage().rss / 1048576;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export async function runLoad(shared: Shared, o: LoadOptions): Promise<LoadSummary> {
  const log = o.log ?? (() => undefined);
  const timeoutMs = o.timeoutMs || loadTimeoutMs(o.rollouts);
  const token = randomBytes(2).toString('hex');
  const env = new ScheduleEnv(shared, `load-${token}`, !o.inProcess);
  const sims: { stop(): void }[] = [];
  let rssMax: number | undefined;
  const sampleRss = () => {
    const v = rssMb(o.inProcess ? undefined : env.workerPid());
    if (v !== undefined) rssMax = Math.max(rssMax ?? 0, v);
  };
  try {
    await env.start();
    const rollouts = planRollouts(o, token, env);
    const byLambda = new Map<string, [Rollout, LambdaTargetSpec]>();
    const byRun = new Map<string, [Rollout, CloudRunTargetSpec]>();
    for (const r of rollouts)
      for (const t of r.spec.targets)
        if (t.provider === 'aws-lambda') byLambda.set(t.function, [r, t]);
        else byRun.set(t.service, [r, t]);
    const nLambda = byLambda.size;
    const nRun = byRun.size;
    const t0 = Date.now();
    await seedEmulators(env, rollouts);
    log(
      `load: ${o.rollouts} rollouts (${rollouts.filter((r) => r.breached).length} to breach), ${nLambda} Lambda + ${nRun} Cloud Run targets seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );

    // Writes as the emulators saw them: the proxy (Lambda alias updates that moto accepted) and the fake (UpdateService).
    const noteWrite = (r: Rollout, t: TargetSpec, toStable: boolean, forward: boolean) => {
      const at = Date.now();
      if (toStable) {
        const xs = r.reverts.get(t.name) ?? [];
        xs.push(at);
        r.reverts.set(t.name, xs);
      } else if (forward && !r.forward.has(t.name)) r.forward.set(t.name, at);
    };
    const lambdaSim = new BatchedLambdaTraffic(shared.motoUrl, {
      requestsPerTick: 200,
      errorRate: (t, version) => errorRate(byLambda.get(t.function)?.[0], t, version),
    });
    const isAliasUpdate = lambdaOp.updateAlias();
    env.proxy.observers.push((call, body, status) => {
      if (!isAliasUpdate(call) || status < 200 || status >= 300) return;
      const fn = /\/functions\/([^/]+)\/aliases\//.exec(call.path)?.[1];
      const hit = fn ? byLambda.get(fn) : undefined;
      if (!hit) return;
      let req: { FunctionVersion?: string; RoutingConfig?: { AdditionalVersionWeights?: Record<string, number> } } = {};
      try {
        req = JSON.parse(body.toString('utf8') || '{}');
      } catch {
        lambdaSim.markDirty(fn!);
        return;
      }
      const [r, t] = hit;
      if (req.FunctionVersion) lambdaSim.setRouting(fn!, req.FunctionVersion, req.RoutingConfig?.AdditionalVersionWeights ?? {});
      else lambdaSim.markDirty(fn!);
      const weights = Object.entries(req.RoutingConfig?.AdditionalVersionWeights ?? {}).filter(([, w]) => w > 0);
      const stable = r.stable[t.name];
      noteWrite(r, t, req.FunctionVersion === stable && weights.length === 0, req.FunctionVersion !== stable || weights.length > 0);
    });
    env.cloudRunFaults.inject({
      method: 'UpdateService',
      times: Number.POSITIVE_INFINITY,
      action: { delayMs: 0 },
      // An observer, not a fault: never matches.
      when: (req) => {
        const name = String(req.service?.name ?? '');
        const hit = byRun.get(name.slice(name.lastIndexOf('/') + 1));
        if (!hit) return false;
        const [r, t] = hit;
        const stable = r.stable[t.name];
        const traffic = (req.service?.traffic ?? []) as { revision?: string; percent?: number; tag?: string }[];
        // A revert writes traffic (and its fence mark, an annotation), never a template.
        const paths: string[] = req.updateMask?.paths ?? [];
        const trafficOnly = paths.includes('traffic') && !paths.includes('template');
        const toStable =
          trafficOnly && traffic.length === 1 && traffic[0].revision === stable && traffic[0].percent === 100 && !traffic[0].tag;
        noteWrite(
          r,
          t,
          toStable,
          traffic.some((x) => x.revision !== stable && (x.percent ?? 0) > 0),
        );
        return false;
      },
    });
    const runSim = new DirectCloudRunTraffic(env.cloudRun, env.monitoring, {
      requestsPerTick: 200,
      errorRate: (t, revision) => errorRate(byRun.get(t.service)?.[0], t, revision),
    });
    function errorRate(r: Rollout | undefined, t: TargetSpec, version: string): number {
      if (!r || version === r.stable[t.name] || !r.breached) return HEALTHY_ERROR_RATE;
      if (r.breachOnMs === undefined && r.waveTargets.has(t.name)) r.breachOnMs = Date.now();
      return r.breachOnMs === undefined ? HEALTHY_ERROR_RATE : BREACH_ERROR_RATE;
    }
    for (const [r, t] of byLambda.values()) {
      lambdaSim.add(t);
      lambdaSim.setRouting(t.function, r.stable[t.name], {}); // as seeded: no GetAlias burst at the start
    }
    for (const [, t] of byRun.values()) runSim.add(t);
    sims.push(lambdaSim.start(1000), runSim.start(1000));

    const tw = Date.now();
    await env.startWorker(o.workerOptions);
    for (let i = 1; i < (o.fleet?.workers ?? 1); i++) await env.addFleetWorker(o.workerOptions);
    log(
      `load: ${o.fleet ? `${o.fleet.workers} workers` : 'worker'} up in ${((Date.now() - tw) / 1000).toFixed(1)} s (${o.inProcess ? 'in process' : `child pid ${env.workerPid()}`})`,
    );
    sampleRss();

    // Start every rollout, a few requests at a time.
    const startT0 = Date.now();
    await inLanes(rollouts, 16, async (r) => {
      r.handle = await startRollout(shared.client, r.spec, {
        startedBy: 'carol',
        taskQueue: env.taskQueue,
        runnerTaskQueue: env.runnerTaskQueue,
      });
      r.startedAtMs = Date.now();
      r.handle.result().then(
        (res) =>
          (r.closed = {
            state: (res as RolloutResult).state,
            reason: (res as RolloutResult).reason,
            history: (res as RolloutResult).status?.history,
            atMs: Date.now(),
          }),
        (err) => (r.closed = { state: 'execution-failed', reason: (err as Error).message, atMs: Date.now() }),
      );
    });
    const startedMs = Date.now() - startT0;
    const killAt = o.fleet ? Date.now() + o.fleet.killAfterMs : undefined;
    let killedAtMs: number | undefined;
    let openAtKill: Rollout[] = [];
    const startRatePerS = o.rollouts / Math.max(0.001, startedMs / 1000);
    log(`load: ${o.rollouts} rollouts started in ${(startedMs / 1000).toFixed(1)} s (${startRatePerS.toFixed(1)}/s)`);

    const violate = (r: Rollout, invariant: Violation['invariant'], detail: string) => {
      if (!r.violations.some((v) => v.invariant === invariant && v.detail === detail)) r.violations.push({ invariant, detail });
    };
    const abort = (r: Rollout, reason: string) => {
      r.abortSentMs = Date.now();
      r.handle!.signal(abortSignal, { by: 'checker', reason }).catch(() => undefined);
    };
    /**
     * Liveness only (the verdict comes from the emulators): a rollout that stopped by itself says so
     * in an alert (rolled-back, rollback-failed) and then waits for an operator: note it, close it by
     * abort. Read from the webhook receiver, so it costs the worker nothing.
     */
    const byService = new Map(rollouts.map((r) => [r.service, r]));
    let alertsSeen = 0;
    const noteAlerts = () => {
      const got = env.webhook.received;
      for (; alertsSeen < got.length; alertsSeen++) {
        const a = got[alertsSeen].body?.rollgate as { service?: string; event?: string; reason?: string } | undefined;
        const r = a?.service ? byService.get(a.service) : undefined;
        if (!r || r.closed || r.abortSentMs || (a!.event !== 'rolled-back' && a!.event !== 'rollback-failed')) continue;
        r.note = `${a!.event}: ${String(a!.reason ?? '').slice(0, 300)}`;
        if (!r.breached || r.breachOnMs === undefined)
          violate(r, 'stable', `${r.breached ? 'breached, before its breach was switched on' : 'healthy'}, stopped by itself: ${r.note}`);
        abort(r, 'load checker: close a rollout waiting for an operator');
      }
    };
    const dropFromSims = new Set<number>();
    let lastLog = Date.now();
    for (;;) {
      sampleRss();
      noteAlerts();
      if (killAt !== undefined && killedAtMs === undefined && Date.now() >= killAt) {
        openAtKill = rollouts.filter((r) => !r.closed);
        killedAtMs = Date.now();
        await env.killWorker();
        log(`load: SIGKILLed the first worker with ${openAtKill.length} rollouts open; the fleet's others take over`);
      }
      for (const r of rollouts) {
        if (r.closed) {
          if (!dropFromSims.has(r.index)) {
            dropFromSims.add(r.index);
            for (const t of r.spec.targets)
              if (t.provider === 'aws-lambda') lambdaSim.remove(t);
              else runSim.remove(t);
          }
          continue;
        }
        if (r.abortSentMs) continue;
        const reverted = [...r.reverts.keys()];
        if (!r.breached && reverted.length) {
          violate(r, 'stable', `healthy rollout reverted: a write put ${reverted.join(', ')} back on stable (no breach was injected)`);
          abort(r, 'load checker: a healthy rollout was reverted');
          continue;
        }
        // Breached: close it once every shifted target was seen reverted after the breach.
        if (r.breached && r.breachOnMs !== undefined && r.forward.size > 0) {
          const done = [...r.forward.keys()].every((n) => (r.reverts.get(n) ?? []).some((at) => at >= r.breachOnMs!));
          if (done) abort(r, 'load checker: close the pipeline paused after the revert');
        }
      }
      const open = rollouts.filter((r) => !r.closed);
      if (open.length === 0) break;
      const now = Date.now();

      if (now - lastLog > 10_000) {
        lastLog = now;
        const reverted = rollouts.filter((r) => r.breached && r.abortSentMs).length;
        log(
          `load: ${((now - startT0) / 1000).toFixed(0)} s: ${rollouts.length - open.length}/${rollouts.length} closed, ${reverted}/${rollouts.filter((r) => r.breached).length} breached reverted, worker RSS ${rssMax?.toFixed(0) ?? '?'} MB, sim ticks ${lambdaSim.ticks}/${runSim.ticks}`,
        );
      }
      if (now - startT0 > timeoutMs) {
        for (const r of open) {
          let where = '';
          try {
            const s = await Promise.race([r.handle!.query(statusQuery), sleep(3000).then(() => undefined)]);
            if (s) where = ` (state ${s.state}, stage ${s.stage}: ${s.detail.slice(0, 200)})`;
          } catch {
            // closed meanwhile
          }
          violate(r, 'stall', `still open ${Math.round(timeoutMs / 1000)} s after the first start${where}`);
          await r.handle!.terminate('load checker: timed out').catch(() => undefined);
          r.closed = { state: 'terminated by the checker', atMs: Date.now() };
        }
        break;
      }
      await sleep(500);
    }
    const wallMs = Math.max(...rollouts.map((r) => r.closed!.atMs)) - startT0;
    for (const s of sims.splice(0)) s.stop();
    // Late writes: in-flight activities finish (a graceful stop drains them) before the emulators are read.
    await sleep(1000);
    await env.stopWorker();
    await sleep(500);

    let fleet: LoadSummary['fleet'];
    if (o.fleet && killedAtMs !== undefined) {
      const stalls: { ms: number; line: string }[] = [];
      await inLanes(openAtKill, 8, async (r) => {
        const { events } = await r.handle!.fetchHistory();
        const s = stallAfterKill(events ?? [], killedAtMs!);
        stalls.push({ ms: s.stallMs, line: `${r.service}: ${(s.stallMs / 1000).toFixed(2)} s (${s.what ?? 'nothing waited'})` });
      });
      const ms = stalls.map((x) => x.ms);
      stalls.sort((a, b) => b.ms - a.ms);
      fleet = {
        workers: o.fleet.workers,
        killedAfterMs: killedAtMs - startT0,
        openAtKill: openAtKill.length,
        stallMs: { p50: percentile(ms, 50), p99: percentile(ms, 99), max: percentile(ms, 100) },
        worst: stalls.slice(0, 5).map((x) => x.line),
      };
    } else if (o.fleet) log('load: every rollout closed before the kill was due: no failover measured');

    const timeouts = noTimeouts();
    await inLanes(rollouts, 8, async (r) => {
      if (!r.handle) return;
      const { events } = await r.handle.fetchHistory();
      addTimeouts(timeouts, timeoutsIn(events ?? [], killedAtMs));
    });

    const rows: LoadRolloutRow[] = [];
    const durations: number[] = [];
    await inLanes(rollouts, 8, async (r) => {
      const state = r.closed!.state;
      if (state === 'execution-failed') violate(r, 'workflow-failed', `the execution ended without a result: ${r.closed!.reason ?? ''}`);
      let breachToRevertMs: number | undefined;
      if (r.breached) {
        for (const p of await checkStable(env, r.spec)) violate(r, 'stable', `breached, closed ${state}: ${p}`);
        if (r.breachOnMs === undefined)
          violate(
            r,
            'harness',
            `the breach was never switched on (no new traffic seen on a wave target; closed ${state}: ${r.closed!.reason ?? ''})`,
          );
        else {
          const firsts = [...r.forward.keys()].map((n) => (r.reverts.get(n) ?? []).find((at) => at >= r.breachOnMs!));
          const missing = [...r.forward.keys()].filter((_, i) => firsts[i] === undefined);
          if (missing.length) violate(r, 'stable', `no revert write observed after the breach on ${missing.join(', ')}`);
          else if (firsts.length) {
            breachToRevertMs = Math.max(...(firsts as number[])) - r.breachOnMs;
            durations.push(breachToRevertMs);
          }
        }
      } else {
        for (const p of await checkPromoted(env, r.spec)) violate(r, 'promoted', `healthy, closed ${state}: ${p}`);
        const reverted = [...r.reverts.entries()].filter(([, xs]) => xs.length);
        if (reverted.length)
          violate(r, 'stable', `healthy rollout got revert writes: ${reverted.map(([n, xs]) => `${n} x${xs.length}`).join(', ')}`);
      }
      for (const p of await checkOneVersion(env, r.spec)) violate(r, 'one-version', p);
      const emulators: string[] = [];
      if (r.violations.length) for (const t of r.spec.targets) emulators.push(`${t.name}: ${await describeTarget(env, t)}`);
      const why = r.violations.length ? whyItStopped(r.closed?.history) : [];
      rows.push({
        index: r.index,
        service: r.service,
        breached: r.breached,
        shape: r.shape,
        outcome: state,
        breachToRevertMs,
        violations: r.violations,
        emulators,
        why,
      });
    });
    rows.sort((a, b) => a.index - b.index);
    const outcomes: Record<string, number> = {};
    for (const r of rows) outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
    return {
      rollouts: rollouts.length,
      breached: rollouts.filter((r) => r.breached).length,
      lambdaTargets: nLambda,
      cloudRunTargets: nRun,
      outcomes,
      wallMs,
      startRatePerS,
      breachToRevertMs: {
        n: durations.length,
        p50: percentile(durations, 50),
        p99: percentile(durations, 99),
        max: percentile(durations, 100),
      },
      workerRssMaxMb: rssMax,
      fleet,
      timeouts,
      workerRss: o.inProcess ? 'checker process (worker in process)' : 'worker child process',
      simulator: { lambdaTicks: lambdaSim.ticks, cloudRunTicks: runSim.ticks, metricPuts: lambdaSim.puts },
      apiCalls: { lambda: env.proxy.calls.length, cloudRun: Object.values(env.cloudRun.calls).reduce((a, b) => a + b, 0) },
      violations: rows.reduce((n, r) => n + r.violations.length, 0),
      rows,
    };
  } finally {
    for (const s of sims) s.stop();
    await env.close().catch(() => undefined);
  }
}

/** A live worker's timeouts are the ones before the kill and more than 10 s after it. */
const phasesText = (p: Phases, kill: boolean) =>
  kill ? `${p.before} before the kill, ${p.within} within 10 s after it, ${p.after} later` : String(p.before);

const sec = (ms: number | undefined) => (ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(2)} s`);

export function loadTable(s: LoadSummary, o: { seed: number; breachShare: number }): string[] {
  const rows: [string, string][] = [
    ['rollouts', `${s.rollouts} (${s.breached} breached, seed ${o.seed}, breach share ${o.breachShare})`],
    ['targets', `${s.lambdaTargets} Lambda + ${s.cloudRunTargets} Cloud Run`],
    [
      'outcomes',
      Object.entries(s.outcomes)
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
    ],
    ['breach -> revert p50', sec(s.breachToRevertMs.p50)],
    ['breach -> revert p99', sec(s.breachToRevertMs.p99)],
    ['breach -> revert max', `${sec(s.breachToRevertMs.max)} (${s.breachToRevertMs.n} measured)`],
    ['wall time', `${sec(s.wallMs)} (first start to last close)`],
    ['start rate', `${s.startRatePerS.toFixed(1)} rollouts/s`],
    ['max RSS', s.workerRssMaxMb === undefined ? 'n/a' : `${s.workerRssMaxMb.toFixed(0)} MB (${s.workerRss})`],
    [
      'simulator ticks',
      `${s.simulator.lambdaTicks} Lambda, ${s.simulator.cloudRunTicks} Cloud Run (${s.simulator.metricPuts} PutMetricData)`,
    ],
    ['provider calls', `${s.apiCalls.lambda} Lambda API (via the proxy), ${s.apiCalls.cloudRun} Cloud Run Admin API`],
    ...(s.fleet
      ? ([
          [
            'fleet',
            `${s.fleet.workers} workers; the first SIGKILLed ${sec(s.fleet.killedAfterMs)} after the first start, ${s.fleet.openAtKill} rollouts open`,
          ],
          ['failover stall p50', sec(s.fleet.stallMs.p50)],
          ['failover stall p99', `${sec(s.fleet.stallMs.p99)} (target <= 3 s)`],
          ['failover stall max', sec(s.fleet.stallMs.max)],
          ...s.fleet.worst.map((w, i): [string, string] => [`  worst ${i + 1}`, w]),
        ] as [string, string][])
      : []),
    ['workflow task timeouts', phasesText(s.timeouts.workflowTask, !!s.fleet)],
    ['heartbeat timeouts', phasesText(s.timeouts.heartbeat, !!s.fleet)],
    [
      '  of a live worker',
      Object.entries(s.timeouts.liveHeartbeatByType)
        .sort((a, b) => b[1] - a[1])
        .map(([t, n]) => `${t} ${n}`)
        .join(', ') || 'none',
    ],
    ['violations', String(s.violations)],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
}

export function loadViolationLines(s: LoadSummary, o: { seed: number; breachShare: number }): string[] {
  const repro = `--load ${s.rollouts} --breach-share ${o.breachShare} --seed ${o.seed}`;
  return s.rows.flatMap((r) => [
    ...r.violations.map(
      (v) =>
        `VIOLATION [${v.invariant}] rollout ${r.index} ${r.service} (${r.breached ? 'breached' : 'healthy'}; ${r.shape}; ${repro}): ${v.detail}`,
    ),
    ...r.emulators.map((e) => `    ${e}`),
    ...r.why.map((e) => `    why: ${e}`),
  ]);
}

/** The history entries before the first rollback stage (or the last few), each cut to one line. */
function whyItStopped(history: HistoryEntry[] | undefined): string[] {
  if (!history?.length) return [];
  const rollback = history.findIndex((e) => e.kind === 'stage' && e.text.startsWith('rollback'));
  const end = rollback >= 0 ? rollback + 1 : history.length;
  return history.slice(Math.max(0, end - 6), end).map((e) => `[${e.kind}] ${e.text.replace(/\s+/g, ' ').slice(0, 400)}`);
}

export function loadJsonRows(s: LoadSummary, o: { seed: number; breachShare: number }): string[] {
  const { rows, ...summary } = s;
  return [
    ...rows.map((r) => JSON.stringify({ type: 'load-rollout', ...r })),
    JSON.stringify({ type: 'load-summary', seed: o.seed, breachShare: o.breachShare, ...summary }),
  ];
}

export function loadSummaryLine(s: LoadSummary): string {
  return `${s.rollouts} rollouts, ${s.violations} invariant violations`;
}
