/**
 * Benchmark "sticky" (issue 12 item 4): the sticky queue of one busy worker. N rollouts parked in a
 * bake on one worker process (in-memory provider), then every one of them paused and resumed at
 * once (bench/sticky-burst.ts): how long their workflow tasks waited on the worker's sticky queue,
 * and whether any waited past the sticky-queue timeout (then it is moved to the shared queue and
 * replayed from its whole history). A timeout is justified when the worst wait stays well below it.
 */
import { STICKY_QUEUE_TIMEOUT_MS } from '../src/worker';
import { QUICK, bundlePath, client, median, pct, report, spawnWorker } from './common';
import { IN_CANARY, parkedFamily, startMany, waitForCount } from './parked';
import { stickyBurst } from './sticky-burst';

const QUEUE = 'bench-sticky';

export async function benchSticky() {
  // BENCH_STICKY_PARKED=N: how many parked rollouts; BENCH_STICKY_TIMEOUT_MS: a candidate timeout (rollgate's by default).
  const n = QUICK ? 20 : Number(process.env.BENCH_STICKY_PARKED || 2_000);
  const timeout = Number(process.env.BENCH_STICKY_TIMEOUT_MS || STICKY_QUEUE_TIMEOUT_MS);
  console.log(
    `8. sticky queue: ${n} parked rollouts on one worker (sticky timeout ${timeout} ms), every one paused, then resumed, at once`,
  );
  const { child } = await spawnWorker({ BENCH_TASK_QUEUE: QUEUE, BENCH_PROVIDER: 'memory', BENCH_BUNDLE: bundlePath });
  try {
    const ids: string[] = [];
    await startMany(QUEUE, 0, n, parkedFamily('sticky'), ids);
    await waitForCount(QUEUE, IN_CANARY, n, 'reached their bake', QUICK ? 60_000 : 900_000);
    const r = await stickyBurst(client, ids);
    const at = `at ${n} parked`;
    console.log(`   ${r.waits.length} workflow tasks caused by the burst`);
    report('sticky', `sticky queue ${at}: task wait (scheduled -> started) p50`, median(r.waits), 'ms');
    report('sticky', `sticky queue ${at}: task wait p99`, pct(r.waits, 99), 'ms');
    report('sticky', `sticky queue ${at}: task wait max`, Math.max(...r.waits), 'ms', { op: '<=', v: timeout / 2 });
    report('sticky', `sticky queue ${at}: tasks timed out to the shared queue`, r.stickyTimeouts, '', { op: '<=', v: 0 });
    report('sticky', `sticky queue ${at}: burst drained (last task completed)`, r.drainMs, 'ms');
  } finally {
    child.kill('SIGKILL');
  }
}
