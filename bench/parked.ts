/** Benchmark 3: parked rollouts in a long bake on one worker process (memory, status/pause latency at 10,000, a wake storm). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { sampleZip } from '../src/dev/lambda-fixtures';
import { startRollout } from '../src/client';
import { validateSpec } from '../src/spec/validate';
import type { LambdaTargetSpec, RolloutSpec } from '../src/spec/schema';
import { pauseSignal, statusQuery, type RolloutResult } from '../src/contract';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { QUICK, STATE, bundlePath, client, median, pct, report, rssMiB, sleep, spawnWorker } from './common';
import { eventMs, type HistoryEvent } from './history-events';

// ---- 3: parked rollouts ------------------------------------------------------------------------

const QUEUE = 'bench-parked';
/**
 * The parked rollouts hand over before parking (the start's `parkHandoverAfterMs`, opt-in):
 * `BENCH_PARK_HANDOVER_MS`, 5 minutes by default, 0 to measure without it.
 */
const PARK_HANDOVER_MS = Number(process.env.BENCH_PARK_HANDOVER_MS ?? 300_000);

/** Starts rollouts `from`..`to`-1 of a spec family on `queue` with `concurrency` starters; returns starts per second. */
export async function startMany(
  queue: string,
  from: number,
  to: number,
  make: (i: number) => RolloutSpec,
  ids: string[],
  concurrency = 100,
): Promise<number> {
  const t0 = performance.now();
  let next = from;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < to) {
        const i = next++;
        const h = await startRollout(client, make(i), {
          startedBy: 'bench',
          taskQueue: queue,
          ...(PARK_HANDOVER_MS > 0 ? { parkHandoverAfterMs: PARK_HANDOVER_MS } : {}),
        });
        ids.push(h.workflowId);
      }
    }),
  );
  return (to - from) / ((performance.now() - t0) / 1000);
}

/**
 * The dev server's own start rate: `n` starts on a queue no worker polls, so nothing else (no first
 * workflow tasks, no activities) competes for the machine's cores; then they are terminated. Read
 * beside the start rate with the worker taking each rollout's first tasks, it says which of the
 * two sets the pace.
 */
export async function serverOnlyStartRate(n: number): Promise<number> {
  const ids: string[] = [];
  const rate = await startMany(`${QUEUE}-unpolled`, 0, n, parkedFamily('unpolled'), ids);
  let next = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (next < ids.length) await client.workflow.getHandle(ids[next++]).terminate('bench: start rate measured');
    }),
  );
  return rate;
}

/** The rollouts of `queue` that match `where` (a visibility query). */
const onQueue = (queue: string, where: string) => `WorkflowType = 'rolloutWorkflow' AND TaskQueue = '${queue}' AND ${where}`;
/** Runs that ended: a run that continued as new (before parking, or past its event limit) is not one. */
const CLOSED = `ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew'`;
/** Running rollouts in the canary stage (the runs they handed over from carry the same search attributes). */
export const IN_CANARY = `ExecutionStatus = 'Running' AND RolloutStage = 'canary'`;

/** Why the first closed parked rollout closed (its status and result or failure), for the error. */
async function closedReason(queue: string): Promise<string> {
  for await (const w of client.workflow.list({ query: onQueue(queue, CLOSED) })) {
    const outcome = await client.workflow
      .getHandle(w.workflowId, w.runId)
      .result()
      .then(
        (r) => `${(r as RolloutResult).state}: ${(r as RolloutResult).reason ?? ''}`,
        (err: Error) => `${err.message}: ${(err.cause as Error | undefined)?.message ?? ''}`,
      );
    return `${w.workflowId} ${w.status.name}, ${outcome}`;
  }
  return 'not listed yet';
}

/** Until `n` rollouts of `queue` match `where`; with `refuseClosed`, fails as soon as one has closed. */
export async function waitForCount(queue: string, where: string, n: number, what: string, timeoutMs: number, refuseClosed = true) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { count } = await client.workflow.count(onQueue(queue, where));
    if (count >= n) return;
    if (refuseClosed) {
      const closed = await client.workflow.count(onQueue(queue, CLOSED));
      if (closed.count > 0) throw new Error(`${closed.count} parked rollout(s) closed instead of parking: ${await closedReason(queue)}`);
    }
    if (Date.now() > deadline) throw new Error(`only ${count} of ${n} rollouts ${what} in time`);
    await sleep(500);
  }
}

/** The first activity scheduled after `from` (an event index) and its time. */
function nextActivityMs(events: HistoryEvent[], from: number): number | undefined {
  for (let i = from; i < events.length; i++) if (events[i].activityTaskScheduledEventAttributes) return eventMs(events[i]);
  return undefined;
}

/** The end of the first bake as planned (its task's start + the timer) and the first activity scheduled after it fired. */
function bakeWake(events: HistoryEvent[]): { plannedMs: number; nextMs: number } | undefined {
  let taskStartedMs = 0;
  let timerId: string | undefined;
  let plannedMs = 0;
  for (const [i, e] of events.entries()) {
    if (e.workflowTaskStartedEventAttributes) taskStartedMs = eventMs(e);
    const started = e.timerStartedEventAttributes;
    const summary = e.userMetadata?.summary ? defaultPayloadConverter.fromPayload<string>(e.userMetadata.summary as Payload) : '';
    if (started && timerId === undefined && summary.startsWith('bake ')) {
      timerId = started.timerId!;
      const d = started.startToFireTimeout!;
      plannedMs = taskStartedMs + Number(d.seconds ?? 0) * 1000 + (d.nanos ?? 0) / 1e6;
    }
    if (timerId !== undefined && e.timerFiredEventAttributes?.timerId === timerId) {
      const nextMs = nextActivityMs(events, i);
      return nextMs === undefined ? undefined : { plannedMs, nextMs };
    }
  }
  return undefined;
}

/** The first traffic step (setTraffic) scheduled: what a rollout frozen until `untilMs` does when it wakes. */
function freezeWake(untilMs: number) {
  return (events: HistoryEvent[]): { plannedMs: number; nextMs: number } | undefined => {
    const e = events.find((x) => x.activityTaskScheduledEventAttributes?.activityType?.name === 'setTraffic');
    return e ? { plannedMs: untilMs, nextMs: eventMs(e) } : undefined;
  };
}

/** For each rollout, from the planned end of a wait to its next step, read from its history. */
async function wakeLags(ids: string[], find: (events: HistoryEvent[]) => { plannedMs: number; nextMs: number } | undefined) {
  const lags: number[] = [];
  const plannedEnds: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (next < ids.length) {
        const found = find((await client.workflow.getHandle(ids[next++]).fetchHistory()).events ?? []);
        if (!found) continue;
        lags.push(found.nextMs - found.plannedMs);
        plannedEnds.push(found.plannedMs);
      }
    }),
  );
  return { lags, plannedEnds };
}

/** A family of rollouts of one in-memory Lambda target that park in a 2-hour canary bake; member i is `<prefix>-<i>`. */
export function parkedFamily(prefix: string): (i: number) => RolloutSpec {
  const zip = join(STATE, `${prefix}.zip`);
  writeFileSync(zip, sampleZip(prefix));
  const target: LambdaTargetSpec = { name: 'mem', provider: 'aws-lambda', region: 'us-east-1', function: 'mem', alias: 'live' };
  const base = validateSpec({
    service: prefix,
    release: 'p1',
    schema_rev: '1',
    artifact: { file: zip },
    targets: [target],
    canary: { targets: ['mem'], weight: 10, bake: '2 hours' },
  });
  return (i) => ({ ...base, service: `${prefix}-${i}`, targets: [{ ...target, function: `${prefix}-${i}` }] });
}

function utcLocal(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19);
}

/**
 * 3: parked rollouts on one worker with its default (bounded) workflow cache: memory, start rate,
 * query and signal latency at every size, mostly on evicted rollouts; then a wake storm: 1,000
 * rollouts held by a freeze window that ends at one instant take their canary step, then their
 * bakes (which therefore end within about a second of each other) take the next one.
 */
export async function benchParked() {
  // BENCH_PARKED=N: another final size (a storm of N/10), e.g. on a loaded machine; rows are then "parked".
  const final = QUICK ? 20 : Number(process.env.BENCH_PARKED || 10_000);
  const storm = QUICK ? 10 : Math.round(final / 10);
  const sizes = QUICK || final <= 2_000 ? [final - storm] : [2_000, final - storm];
  const name = (n: number) => (n === 10_000 && !QUICK ? 'parked 10,000' : 'parked');
  const at10k = <T>(t: T) => (final === 10_000 && !QUICK ? t : undefined);
  console.log(
    `3. ${final} parked rollouts on one worker (in-memory provider: measures the worker, not an emulator), then a wake storm of ${storm}`,
  );
  const { child, phases } = await spawnWorker({ BENCH_TASK_QUEUE: QUEUE, BENCH_PROVIDER: 'memory', BENCH_BUNDLE: bundlePath });
  const cache = phases.cachedWorkflows;
  // Rollouts are started in waves no larger than the worker's cache, each parked before the next:
  // a rollout takes ~20 workflow tasks and a handover to a new run to park, and with more in flight than the cache holds every
  // task of an evicted one replays its history (the 2026-12-02 run, 7,000 at once with a cache of
  // 1,000: 6,303 parked after 15 minutes). The start rate is that of the first wave's burst.
  const wave = Math.max(10, Math.min(cache, 1_000));
  console.log(`    worker: workflow cache ${cache}, V8 heap limit ${phases.heapLimitMiB} MiB; starts in waves of ${wave}`);
  let peakRss = 0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiB(child.pid!))), 250);
  const parked = parkedFamily('parked');
  const ids: string[] = [];
  try {
    const alone = QUICK ? 10 : Math.min(1_000, wave);
    report(
      'parked',
      `start rate of the dev server alone, a burst of ${alone} (no worker polls their queue)`,
      await serverOnlyStartRate(alone),
      '/s',
    );
    let started = 0;
    for (const n of sizes) {
      const from = started;
      let rate = 0;
      const t0 = performance.now();
      for (let w = from; w < n; w += wave) {
        const r = await startMany(QUEUE, w, Math.min(n, w + wave), parked, ids);
        if (w === from) rate = r;
        await waitForCount(QUEUE, IN_CANARY, Math.min(n, w + wave), 'reached their bake', QUICK ? 60_000 : 900_000);
      }
      started = n;
      await sleep(1000);
      report('parked', `start rate, a burst of ${Math.min(wave, n - from)} (from ${from})`, rate, '/s');
      report('parked', `parked per second, ${from} -> ${n} in waves of ${wave}`, (n - from) / ((performance.now() - t0) / 1000), '/s');
      report('parked', `worker RSS at ${n} parked`, rssMiB(child.pid!), 'MiB');
    }

    // The storm rollouts: frozen before their canary step until one instant, then a bake of the same length.
    const bakeS = QUICK ? 5 : 30;
    // Lead time: every storm rollout must be frozen before the instant (a rollout parks in ~0.1-0.25 s of
    // the worker's time on the 2-core machine, so 1,000 need minutes).
    const leadMs = QUICK ? 30_000 : Math.max(150_000, storm * 400);
    const stormAt = Math.ceil((Date.now() + leadMs) / 1000) * 1000;
    const storming = parkedFamily('storm');
    const stormSpec = (i: number): RolloutSpec => ({
      ...storming(i),
      canary: { targets: ['mem'], weight: 10, bake: `${bakeS} seconds` },
      freeze_windows: [{ name: 'storm', timezone: 'UTC', from: utcLocal(Date.now() - 60_000), to: utcLocal(stormAt) }],
    });
    const stormIds: string[] = [];
    const stormRate = await startMany(QUEUE, 0, storm, stormSpec, stormIds);
    report(name(final), `start rate while starting ${storm} (to ${final})`, stormRate, '/s', at10k({ op: '>=', v: 200 }));
    await waitForCount(QUEUE, IN_CANARY, final, 'reached their bake or freeze', Math.max(5_000, stormAt - Date.now() - 5_000));
    await sleep(1000);
    report(name(final), `worker RSS at ${final} parked`, rssMiB(child.pid!), 'MiB', at10k({ op: '<=', v: 1024 }));

    // Latency on rollouts across the whole set: most of them are not in the cache (a query replays).
    const q: number[] = [];
    const s: number[] = [];
    for (let i = 0; i < 40; i++) {
      const h = client.workflow.getHandle(ids[Math.floor((i * ids.length) / 40)]);
      const t0 = performance.now();
      await h.query(statusQuery);
      q.push(performance.now() - t0);
      const t1 = performance.now();
      await h.signal(pauseSignal, { by: 'bench' });
      s.push(performance.now() - t1);
    }
    report(name(final), `status query latency p50 at ${final}`, median(q), 'ms', at10k({ op: '<=', v: 25 }));
    report(name(final), `pause signal latency p50 at ${final}`, median(s), 'ms', at10k({ op: '<=', v: 25 }));
    const sample = await client.workflow.getHandle(ids[0]).fetchHistory();
    report(name(final), 'history events per parked rollout', sample.events?.length ?? NaN, 'events');
    report(name(final), 'history size per parked rollout', Buffer.byteLength(JSON.stringify(sample)) / 1024, 'KiB');
    report(name(final), 'workflow cache (maxCachedWorkflows)', cache, 'runs');

    // Query twice the cache's worth of other parked rollouts: the storm rollouts (the last ones
    // touched) are pushed out of the cache, so the storm wakes evicted rollouts.
    const sweep = ids.slice(0, Math.min(ids.length, 2 * cache));
    const sweepLatency: number[] = [];
    const t0 = performance.now();
    let k = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (k < sweep.length) {
          const h = client.workflow.getHandle(sweep[k++]);
          const t1 = performance.now();
          await h.query(statusQuery);
          sweepLatency.push(performance.now() - t1);
        }
      }),
    );
    report(
      name(final),
      `status queries of ${sweep.length} rollouts (cache ${cache}), 20 at a time`,
      sweep.length / ((performance.now() - t0) / 1000),
      '/s',
    );
    report(name(final), `  their latency p50 (20 in flight)`, median(sweepLatency), 'ms');

    // The storm: every freeze ends at stormAt; then every bake ends bakeS seconds after its canary step.
    if (Date.now() > stormAt) throw new Error('the storm rollouts were not all frozen before the storm: raise the lead time');
    // A storm that does not finish in time is a measured miss (how many made it), not a crashed bench:
    // the rows above are kept and written.
    const stormWaitS = (QUICK ? 60 : 300) + bakeS;
    await waitForCount(QUEUE, `ExecutionStatus = 'Completed'`, storm, 'promoted after the storm', stormWaitS * 1000, false).catch(
      () => undefined,
    );
    const { count: promoted } = await client.workflow.count(onQueue(QUEUE, `ExecutionStatus = 'Completed'`));
    report(
      name(final),
      `wake storm: promoted within ${stormWaitS} s of the freeze end, of ${storm}`,
      promoted,
      'runs',
      at10k({ op: '>=', v: storm }),
    );
    const freeze = await wakeLags(stormIds, freezeWake(stormAt));
    const bake = await wakeLags(stormIds, bakeWake);
    // Lags are of the rollouts that got that far (all of them when the storm finished); none, no row.
    const spread = (xs: number[]) => (Math.max(...xs) - Math.min(...xs)) / 1000;
    if (freeze.lags.length > 0) {
      const what = `freeze ends (${freeze.lags.length} of ${storm} at one instant) -> next step`;
      report(name(final), `${what} p50`, median(freeze.lags), 'ms');
      report(name(final), `${what} p99`, pct(freeze.lags, 99), 'ms', at10k({ op: '<=', v: 10_000 }));
    }
    if (bake.lags.length > 0) {
      const what = `bake ends (${bake.lags.length} of ${storm} within ${spread(bake.plannedEnds).toFixed(1)} s) -> next step`;
      report(name(final), `${what} p50`, median(bake.lags), 'ms');
      report(name(final), `${what} p99`, pct(bake.lags, 99), 'ms', at10k({ op: '<=', v: 10_000 }));
    }
    // Always: the peak is the memory figure of an unfinished storm too.
    report(name(final), `worker peak RSS (storm included)`, peakRss, 'MiB', at10k({ op: '<=', v: 1024 }));
  } finally {
    clearInterval(sampler);
    child.kill('SIGKILL');
  }
}
