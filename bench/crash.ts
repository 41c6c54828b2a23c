/** Benchmark 5: crash to resume (SIGKILL just before a bake ends; a new worker picks the rollout up). */
import { createSampleFunction } from '../src/dev/lambda-fixtures';
import { startRollout } from '../src/client';
import { statusQuery } from '../src/contract';
import { QUICK, bundlePath, client, lambdaTargets, median, moto, proxy, report, sleep, spawnWorker, spec } from './common';

// ---- 5 + 6: crash to resume, cold start --------------------------------------------------------

export async function benchCrash() {
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
