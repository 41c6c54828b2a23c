/** Building blocks of the pipeline: bakes with analysis, approvals, freeze windows, locks, alerts. */
import { CancellationScope, condition, sleep, workflowInfo } from '@temporalio/workflow';
import type { TargetSpec, WaveSpec } from '../../spec/schema';
import { formatDuration, mustDurationMs } from '../../spec/duration';
import { combineVerdicts } from '../../analysis/threshold-judge';
import type { AlertPayload } from '../../activities/notify';
import type { Verdict } from '../../contract';
import { RolloutRun, RolloutStop } from './rollout-state';
import { acts, alerts, local } from './activity-options';
import { failureMessage } from './saga';
import { emitRolloutEvent } from '../../observability/workflow-sink';

/**
 * Bake with a durable timer, analysing at `rollback.interval` during the bake (a breach mid-bake
 * starts the saga at once) and at its end. A pause stops the clock; time already baked counts.
 * No data (inconclusive) follows the spec's policy: extend the bake, fail, or pass if opted in.
 */
export async function bakeAndAnalyze(run: RolloutRun, targets: TargetSpec[], bakeMs: number, label: string): Promise<void> {
  const rule = run.spec.rollback;
  const intervalMs = rule.interval ? mustDurationMs(rule.interval) : Math.max(bakeMs, 1);
  const windowStartMs = Date.now();
  let extensions = 0;
  for (;;) {
    let remaining = bakeMs;
    while (remaining > 0) {
      await run.holdWhilePaused();
      run.throwIfExternalBreach();
      const slice = Math.min(remaining, intervalMs);
      const t0 = Date.now();
      run.bakeEndsAtMs = t0 + remaining;
      run.setDetail(`baking ${formatDuration(remaining)} left: ${label}`);
      const interrupted = await condition(() => run.paused || !!run.externalBreach, slice, {
        summary: `bake ${formatDuration(slice)} at ${label}`,
      });
      run.throwIfExternalBreach();
      if (!interrupted && remaining - (Date.now() - t0) > 0) {
        const v = await analyze(run, targets, windowStartMs);
        if (v.verdict === 'fail') throw new RolloutStop('breach', v.reason);
      }
      // Time spent analysing counts as baked: the bake lasts its duration, not duration + analyses.
      remaining -= Date.now() - t0;
    }
    run.bakeEndsAtMs = undefined;
    const v = await analyze(run, targets, windowStartMs);
    if (v.verdict === 'pass') return;
    if (v.verdict === 'fail') throw new RolloutStop('breach', v.reason);
    // Inconclusive: not enough data to judge.
    if (rule.on_no_data === 'pass') {
      run.record('decision', `no data, passing because rollback.on_no_data is "pass": ${v.reason}`);
      return;
    }
    if (rule.on_no_data === 'synthetic') {
      run.record('decision', `no data, switching to synthetic traffic: ${v.reason}`);
      const s = await analyze(run, targets, windowStartMs, true);
      if (s.verdict === 'pass') return;
      if (s.verdict === 'fail') throw new RolloutStop('breach', s.reason);
      if (extensions < rule.max_extensions) {
        extensions++;
        run.record('decision', `synthetic traffic inconclusive, extending the bake (${extensions}/${rule.max_extensions}): ${s.reason}`);
        continue;
      }
      throw new RolloutStop('no-data', `${s.reason} (synthetic traffic, after ${extensions} extension(s))`);
    }
    if (rule.on_no_data === 'extend-then-fail' && extensions < rule.max_extensions) {
      extensions++;
      run.record('decision', `no data, extending the bake (${extensions}/${rule.max_extensions}): ${v.reason}`);
      continue;
    }
    throw new RolloutStop('no-data', `${v.reason}${rule.on_no_data === 'extend-then-fail' ? ` (after ${extensions} extension(s))` : ''}`);
  }
}

async function analyze(run: RolloutRun, targets: TargetSpec[], startMs: number, synthetic = false): Promise<Verdict> {
  await run.holdWhilePaused();
  const verdicts = await acts.analyzeCanary({
    ...(synthetic ? { synthetic } : {}),
    targets: targets.map((spec) => {
      const t = run.targets.get(spec.name)!;
      return { target: spec, stableVersion: t.stableVersion!, newVersion: t.newVersion! };
    }),
    rule: run.spec.rollback,
    startMs,
  });
  for (const v of verdicts) {
    if (!v.target) continue;
    const t = run.targets.get(v.target)!;
    t.lastAnalysis = v;
    const service = run.spec.service;
    if (v.canaryErrorRate !== undefined)
      emitRolloutEvent({
        kind: 'error-rate',
        service,
        target: t.name,
        revision: t.newVersion!,
        role: 'canary',
        errorRate: v.canaryErrorRate,
      });
    if (v.baselineErrorRate !== undefined)
      emitRolloutEvent({
        kind: 'error-rate',
        service,
        target: t.name,
        revision: t.stableVersion!,
        role: 'baseline',
        errorRate: v.baselineErrorRate,
      });
    if (v.verdict === 'fail') emitRolloutEvent({ kind: 'breach', service, metric: v.metric ?? 'unknown', target: v.target });
  }
  const combined = { ...combineVerdicts(verdicts), atMs: Date.now() };
  run.lastAnalysis = combined;
  run.record('verdict', `${combined.verdict}: ${combined.reason}`);
  run.publish();
  return combined;
}

export async function awaitApproval(run: RolloutRun, wave: WaveSpec): Promise<void> {
  await run.holdWhilePaused();
  run.awaitingApproval = wave.name;
  run.setDetail(`awaiting approval for wave ${wave.name} from ${run.spec.approvers.join(', ')}`);
  await condition(() => run.awaitingApproval === undefined);
  const last = run.approvals[run.approvals.length - 1];
  if (last.decision === 'rejected') throw new RolloutStop('rejected', `wave ${wave.name} rejected by ${last.by}: ${last.reason ?? ''}`);
}

/** No traffic step advances inside a freeze window: wait durably and say until when. */
export async function holdForFreezeWindows(run: RolloutRun): Promise<void> {
  if (run.spec.freeze_windows.length === 0) return;
  for (;;) {
    const freeze = await local.checkFreeze({ windows: run.spec.freeze_windows });
    if (!freeze) return;
    const until = new Date(freeze.untilMs).toISOString();
    const before = run.detail;
    run.setDetail(`frozen until ${until} (freeze window ${freeze.window})`);
    run.record('wait', `frozen until ${until} (freeze window ${freeze.window})`);
    await sleep(Math.max(1000, freeze.untilMs - Date.now()), { summary: `frozen until ${until} (${freeze.window})` });
    run.setDetail(before);
  }
}

/**
 * Services declaring the same shared dependency never shift traffic at the same time. Locks are
 * taken in sorted order (no deadlock between two services sharing two dependencies) and released
 * after promote, or after the saga by `releaseDependencyLocks`.
 */
export async function withDependencyLocks(run: RolloutRun, body: () => Promise<void>): Promise<void> {
  const deps = [...run.spec.shared_dependencies].sort();
  for (const dependency of deps) {
    await acts.requestDependencyLock({ dependency, holder: run.id, taskQueue: workflowInfo().taskQueue });
    run.heldLocks.add(dependency);
    if (!run.grantedLocks.has(dependency)) {
      const before = run.detail;
      run.setDetail(`waiting for shared dependency ${dependency}: another rollout is shifting traffic`);
      run.record('wait', `waiting for shared dependency ${dependency}`);
      await condition(() => run.grantedLocks.has(dependency));
      run.setDetail(before);
    }
    run.record('decision', `holding shared dependency ${dependency}`);
  }
  await body();
  await releaseDependencyLocks(run);
}

export async function releaseDependencyLocks(run: RolloutRun): Promise<void> {
  if (run.heldLocks.size === 0) return;
  await CancellationScope.nonCancellable(() =>
    Promise.all(
      [...run.heldLocks].map(async (dependency) => {
        await acts.releaseDependencyLock({ dependency, holder: run.id });
        run.heldLocks.delete(dependency);
        run.grantedLocks.delete(dependency);
      }),
    ),
  );
}

/** POST to the notify webhook; the delivery (or its failure) is recorded, never thrown. */
export async function alertOperator(
  run: RolloutRun,
  event: string,
  text: string,
  extra: Partial<AlertPayload['rollgate']> = {},
): Promise<void> {
  const webhook = run.spec.notify?.webhook;
  if (!webhook) {
    run.record('alert', `${event} (no notify webhook configured): ${text}`);
    return;
  }
  // "CI pipeline repeatedly fails in the same stage": say so when it is the Nth time in a row.
  const escalateAfter = run.spec.notify?.escalate_after ?? 3;
  let escalation: string | undefined;
  if (run.failedStage && escalateAfter > 0) {
    const streak = await acts.consecutiveStageFailures({ service: run.spec.service, stage: run.failedStage, workflowId: run.id });
    if (streak >= escalateAfter) {
      escalation = `ESCALATION: stage ${run.failedStage} failed in ${streak} consecutive rollouts of ${run.spec.service}`;
      run.record('alert', escalation);
    }
  }
  const payload: AlertPayload = {
    text: escalation ? `${escalation}. ${text}` : text,
    rollgate: {
      rolloutId: run.id,
      service: run.spec.service,
      release: run.spec.release,
      event,
      state: run.state,
      next: `rollgate resume ${run.id} | rollgate abort ${run.id}`,
      ...(escalation ? { escalation } : {}),
      ...extra,
    },
  };
  await CancellationScope.nonCancellable(async () => {
    try {
      const res = await alerts.sendAlert({ webhook, payload });
      run.record('alert', `${event} alert delivered (HTTP ${res.status})`);
    } catch (err) {
      run.record('alert', `${event} alert NOT delivered: ${failureMessage(err)}`);
    }
  });
}
