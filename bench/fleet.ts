/**
 * Benchmark "fleet failover" (issue 12 item 5): two deploy workers (child processes) on one task
 * queue, N rollouts in flight (the fault-schedule load: Lambda in moto, Cloud Run in the fake, a
 * share breaching), SIGKILL the first worker mid-run. Every rollout must still finish with at most
 * one new version per target (checked in the emulators by the load checker), and the stall of each
 * rollout open at the kill (scripts/faults/failover.ts, read from its history) is reported.
 */
import { join } from 'node:path';
import { DEFAULT_LOAD_OPTIONS, fleetWorkerOptions, runLoad } from '../scripts/faults/load';
import { bundlePath, client, moto, nativeConnection, QUICK, report, STATE, temporal } from './common';

export async function benchFleet(): Promise<void> {
  const n = QUICK ? 6 : 200;
  const killAfterMs = QUICK ? 3_000 : 15_000;
  console.log(`7. fleet failover: ${n} rollouts on 2 workers, the first SIGKILLed ${killAfterMs / 1000} s after the starts`);
  const summary = await runLoad(
    {
      temporalAddress: temporal.address,
      motoUrl: moto.url,
      bundlePath,
      stateDir: join(STATE, 'fleet'),
      connection: nativeConnection,
      client,
    },
    {
      ...DEFAULT_LOAD_OPTIONS,
      rollouts: n,
      seed: 7,
      workerOptions: fleetWorkerOptions(n),
      fleet: { workers: 2, killAfterMs },
      log: (line) => console.log(`    ${line}`),
    },
  );
  for (const line of summary.fleet?.worst ?? []) console.log(`    worst stall: ${line}`);
  const closed = summary.rows.filter((r) => !r.violations.some((v) => v.invariant === 'stall' || v.invariant === 'workflow-failed')).length;
  report('fleet', 'fleet failover: rollouts finished', closed, 'count', { op: '>=', v: n });
  report('fleet', 'fleet failover: invariant violations (one version, stable/promoted)', summary.violations, 'count', {
    op: '<=',
    v: 0,
  });
  report('fleet', 'fleet failover: rollouts open at the kill', summary.fleet?.openAtKill ?? 0, 'count');
  // The price of 2 s workflow task and heartbeat timeouts under load: those of a live worker (not within 10 s after the kill).
  const t = summary.timeouts;
  report('fleet', 'fleet failover: workflow task timeouts of a live worker', t.workflowTask.before + t.workflowTask.after, 'count');
  report('fleet', 'fleet failover: heartbeat timeouts of a live worker', t.heartbeat.before + t.heartbeat.after, 'count');
  if (summary.fleet?.stallMs.p50 !== undefined) {
    report('fleet', 'fleet failover: stall p50', summary.fleet.stallMs.p50, 'ms');
    report('fleet', 'fleet failover: stall p99', summary.fleet.stallMs.p99!, 'ms', { op: '<=', v: 3000 });
    report('fleet', 'fleet failover: stall max', summary.fleet.stallMs.max!, 'ms');
  }
}
