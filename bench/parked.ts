/** Benchmark 3: parked rollouts in a long bake on one worker process (memory, pause latency). */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { sampleZip } from '../src/dev/lambda-fixtures';
import { startRollout } from '../src/client';
import { validateSpec } from '../src/spec/validate';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { pauseSignal, statusQuery } from '../src/contract';
import { QUICK, STATE, bundlePath, client, median, report, rssMiB, sleep, spawnWorker } from './common';

// ---- 3: parked rollouts ------------------------------------------------------------------------

export async function benchParked() {
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
      const deadline = Date.now() + (QUICK ? 60_000 : 600_000);
      for (;;) {
        const { count } = await client.workflow.count(
          `WorkflowType = 'rolloutWorkflow' AND RolloutStage = 'canary' AND TaskQueue = 'bench-parked'`,
        );
        if (count >= n) break;
        const closed = await client.workflow.count(
          `WorkflowType = 'rolloutWorkflow' AND TaskQueue = 'bench-parked' AND ExecutionStatus != 'Running'`,
        );
        if (closed.count > 0) throw new Error(`${closed.count} parked rollout(s) closed instead of parking: see rollout-parked-* results`);
        if (Date.now() > deadline) throw new Error(`only ${count} of ${n} rollouts reached their bake in time`);
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
