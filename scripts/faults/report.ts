/** Running many schedules a few at a time, and the report lines (text or JSON). */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import type { Shared } from './env';
import { CallTracker } from './call-tracker';
import { runSchedule, type RunOptions, type ScheduleResult } from './runner';

let runtimeInstalled = false;
export function installRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  } catch {
    // installed already in this process
  }
}

/** How long `close()` waits for the client's calls in flight to settle (each call the checker makes is bounded). */
const CLOSE_WAIT_MS = 40_000;

export async function connectShared(o: {
  temporalAddress: string;
  motoUrl: string;
  bundlePath: string;
  stateDir: string;
}): Promise<Shared & { close(): Promise<void>; inFlightCalls(): string[] }> {
  installRuntime();
  const connection = await NativeConnection.connect({ address: o.temporalAddress });
  const calls = new CallTracker();
  const client = new Client({ connection: await Connection.connect({ address: o.temporalAddress, interceptors: calls.interceptors() }) });
  return {
    ...o,
    connection,
    client,
    inFlightCalls: () => calls.describe(),
    close: async () => {
      await connection.close();
      // A call still retrying when its channel closes throws "Channel has been shut down" from the
      // retry timer, where nothing can catch it: close the client's channel only once it is idle.
      const left = await calls.settled(CLOSE_WAIT_MS);
      if (left.length)
        throw new Error(`client calls still in flight ${CLOSE_WAIT_MS / 1000} s after the schedules ended:\n${left.join('\n')}`);
      await client.connection.close();
    },
  };
}

/** Schedule i of a run starting at `seed` uses seed + i, so `--seed X --schedules 1` replays it alone. */
export function seedsOf(seed: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => seed + i);
}

export async function runSchedules(
  seeds: number[],
  shared: Shared,
  opts: RunOptions,
  concurrency: number,
  /** runSchedule (one rollout), or runTrainSchedule (scripts/faults/train-runner.ts). */
  run: (seed: number, shared: Shared, opts: RunOptions) => Promise<ScheduleResult> = runSchedule,
  onResult?: (r: ScheduleResult) => void,
): Promise<ScheduleResult[]> {
  const results: ScheduleResult[] = new Array(seeds.length);
  let next = 0;
  const lane = async () => {
    while (next < seeds.length) {
      const i = next++;
      results[i] = await run(seeds[i], shared, opts);
      onResult?.(results[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, seeds.length)) }, lane));
  return results;
}

type ReproFlags = { kills: boolean; restarts?: boolean; trains?: boolean };
const flags = (o: ReproFlags) => `${o.kills ? ' --kills' : ''}${o.restarts ? ' --restarts' : ''}${o.trains ? ' --trains' : ''}`;

export function violationLines(r: ScheduleResult, o: ReproFlags): string[] {
  const repro = `--seed ${r.seed} --schedules 1${flags(o)}`;
  return r.violations.map((v) => `VIOLATION [${v.invariant}] seed ${r.seed} (${repro}): ${v.detail}`);
}

export function jsonRows(r: ScheduleResult, o: ReproFlags): string[] {
  const repro = `npm run faults -- --seed ${r.seed} --schedules 1${flags(o)}`;
  return [
    ...r.violations.map((v) =>
      JSON.stringify({ type: 'violation', seed: r.seed, reproduce: repro, invariant: v.invariant, detail: v.detail }),
    ),
    JSON.stringify({
      type: 'schedule',
      seed: r.seed,
      reproduce: repro,
      outcome: r.outcome,
      violations: r.violations.length,
      durationMs: r.durationMs,
      spec: r.shape,
      faults: r.faults,
      trace: r.trace,
    }),
  ];
}

export function summaryLine(results: ScheduleResult[]): string {
  return `${results.length} schedules, ${results.reduce((n, r) => n + r.violations.length, 0)} invariant violations`;
}
