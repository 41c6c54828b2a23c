/** Waits on people and calendars: approvals and freeze windows. Both keep the rollback on (see bake.ts). */
import type { WaveSpec } from '../spec/schema';
import type { RolloutRun } from './rollout-state';
import { stopOf, type Stop } from './gate';
import { checks, local } from './activity-options';
import { holdWhilePaused, takePendingStop, watchWhileWaiting } from './bake';

/** Wait for a decision on the wave; a breach or abort meanwhile ends the wait, and one that came with the approval is acted on first. */
export async function awaitApproval(run: RolloutRun, wave: WaveSpec): Promise<Stop | undefined> {
  const held = await holdWhilePaused(run);
  if (held) return held;
  const gate = run.gate;
  gate.awaitingApproval = wave.name;
  run.setDetail(`awaiting approval for wave ${wave.name} from ${run.spec.approvers.join(', ')}`);
  const stop = await watchWhileWaiting(run, () => gate.awaitingApproval === undefined);
  if (stop) {
    gate.awaitingApproval = undefined; // a late approval is refused, not applied to the next wave
    // Approvals short of min_approvals do not outlive the wait (a handover to the next run carries them).
    if (stop.kind !== 'continue-as-new') run.pendingApprovals = undefined;
    return stop;
  }
  const d = gate.lastDecision!;
  if (d.decision === 'rejected') return stopOf('rejected', `wave ${wave.name} rejected by ${d.by}: ${d.reason ?? ''}`);
  return takePendingStop(run);
}

/** No traffic step advances inside a freeze window: wait durably, say until when, keep watching. */
export async function holdForFreezeWindows(run: RolloutRun): Promise<Stop | undefined> {
  if (run.spec.freeze_windows.length === 0) return undefined;
  for (;;) {
    const freeze = await (run.localChecks ? local : checks).checkFreeze({ windows: run.spec.freeze_windows });
    if (!freeze) return undefined;
    const until = new Date(freeze.untilMs).toISOString();
    const before = run.detail;
    run.setDetail(`frozen until ${until} (freeze window ${freeze.window})`);
    run.record('wait', `frozen until ${until} (freeze window ${freeze.window})`);
    const stop = await watchWhileWaiting(run, () => false, Math.max(Date.now() + 1000, freeze.untilMs));
    if (stop) return stop;
    run.setDetail(before);
  }
}
