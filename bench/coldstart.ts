/** Benchmark 6: worker cold start, with and without the prebuilt workflow bundle. */
import { performance } from 'node:perf_hooks';
import { QUICK, bundlePath, median, report, spawnWorker } from './common';

export async function benchColdStart() {
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
