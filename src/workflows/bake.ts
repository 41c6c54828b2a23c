/**
 * Bakes with analysis, and the waits that keep the rollback switched on: while the pipeline is
 * paused by an operator, waits for an approval or sits in a freeze window, the targets that carry
 * new traffic are still analysed at `rollback.interval` (1 minute when unset), and an abort or an
 * outside breach ends the wait at once. Every function returns the Stop it ran into, or undefined.
 */
import { condition, workflowInfo } from '@temporalio/workflow';
import type { TargetSpec } from '../spec/schema';
import { formatDuration, mustDurationMs } from '../spec/duration';
import { combineVerdicts } from '../analysis/threshold-judge';
import type { BakeProgress, Verdict } from '../contract';
import type { RolloutRun } from './rollout-state';
import { stopOf, type Stop } from './gate';
import { emitRolloutEvent } from '../observability/workflow-sink';

/** How often the targets carrying new traffic are analysed during waits when `rollback.interval` is unset. */
const WAIT_ANALYSIS_INTERVAL = '1 minute';
/** Past this many history events a wait analyses only every LONG_WAIT_INTERVAL_MS. */
const LONG_WAIT_HISTORY = 10_000;
const LONG_WAIT_INTERVAL_MS = 15 * 60_000;

/** The stop an operator or outside verdict asks for; an outside breach is consumed (acted on once). */
export function takePendingStop(run: RolloutRun): Stop | undefined {
  const stop = run.gate.pendingStop();
  if (stop?.kind === 'breach') {
    const v = run.gate.externalBreach!;
    emitRolloutEvent({ kind: 'breach', service: run.spec.service, metric: 'external', target: v.target });
    run.lastAnalysis = v;
    run.gate.externalBreach = undefined;
  }
  return stop;
}

/**
 * Bake with a durable timer, analysing at `rollback.interval` during the bake (a breach mid-bake
 * stops at once) and at its end. A pause stops the clock; time already baked counts.
 * No data (inconclusive) follows the spec's policy: extend the bake, fail, or pass if opted in.
 */
export async function bakeAndAnalyze(run: RolloutRun, targets: TargetSpec[], bakeMs: number, label: string): Promise<Stop | undefined> {
  // A continued run finishes the bake its previous run was in (same window, same extensions).
  const resumed = run.resumedBake;
  run.resumedBake = undefined;
  const progress = resumed ?? { remainingMs: bakeMs, windowStartMs: Date.now(), extensions: 0 };
  run.bake = progress;
  try {
    return await bakeFrom(run, targets, bakeMs, label, progress);
  } finally {
    run.bake = undefined;
  }
}

async function bakeFrom(
  run: RolloutRun,
  targets: TargetSpec[],
  bakeMs: number,
  label: string,
  progress: BakeProgress,
): Promise<Stop | undefined> {
  const rule = run.spec.rollback;
  const intervalMs = rule.interval ? mustDurationMs(rule.interval) : Math.max(bakeMs, 1);
  const windowStartMs = progress.windowStartMs;
  for (; ; progress.extensions++, progress.remainingMs = bakeMs) {
    const extensions = progress.extensions;
    let remaining = progress.remainingMs;
    while (remaining > 0) {
      progress.remainingMs = remaining;
      const held = await holdWhilePaused(run);
      if (held) return held;
      const slice = Math.min(remaining, intervalMs);
      const parking = handOverBeforeParking(run, slice);
      if (parking) return parking;
      const t0 = Date.now();
      run.bakeEndsAtMs = t0 + remaining;
      run.setDetail(`baking ${formatDuration(remaining)} left: ${label}`);
      const interrupted = await condition(() => run.gate.paused || run.gate.pendingStop() !== undefined, slice, {
        summary: `bake ${formatDuration(slice)} at ${label}`,
      });
      const stop = takePendingStop(run);
      if (stop) return stop;
      if (!interrupted && remaining - (Date.now() - t0) > 0) {
        const v = await analyze(run, targets, windowStartMs);
        if (v.verdict === 'fail') return stopOf('breach', v.reason);
      }
      // Time spent analysing counts as baked: the bake lasts its duration, not duration + analyses.
      remaining -= Date.now() - t0;
      progress.remainingMs = Math.max(remaining, 0);
      const handover = continueAsNewNow(run);
      if (handover) return handover;
    }
    progress.remainingMs = 0;
    run.bakeEndsAtMs = undefined;
    const held = await holdWhilePaused(run);
    if (held) return held;
    const v = await analyze(run, targets, windowStartMs);
    if (v.verdict === 'pass') return undefined;
    if (v.verdict === 'fail') return stopOf('breach', v.reason);
    // Inconclusive: not enough data to judge.
    if (rule.on_no_data === 'pass') {
      run.record('decision', `no data, passing because rollback.on_no_data is "pass": ${v.reason}`);
      return undefined;
    }
    if (rule.on_no_data === 'synthetic') {
      run.record('decision', `no data, switching to synthetic traffic: ${v.reason}`);
      const s = await analyze(run, targets, windowStartMs, true);
      if (s.verdict === 'pass') return undefined;
      if (s.verdict === 'fail') return stopOf('breach', s.reason);
      if (extensions >= rule.max_extensions) return stopOf('no-data', `${s.reason} (synthetic traffic, after ${extensions} extension(s))`);
      run.record('decision', `synthetic traffic inconclusive, extending the bake (${extensions + 1}/${rule.max_extensions}): ${s.reason}`);
      continue;
    }
    if (rule.on_no_data !== 'extend-then-fail') return stopOf('no-data', v.reason);
    if (extensions >= rule.max_extensions) return stopOf('no-data', `${v.reason} (after ${extensions} extension(s))`);
    run.record('decision', `no data, extending the bake (${extensions + 1}/${rule.max_extensions}): ${v.reason}`);
  }
}

/** One verdict over every target (any fail fails), recorded on the targets and the rollout. */
export async function analyze(run: RolloutRun, targets: TargetSpec[], startMs: number, synthetic = false): Promise<Verdict> {
  const verdicts = await run.acts.watched.analyzeCanary({
    ...(synthetic ? { synthetic } : {}),
    targets: targets.map((spec) => {
      const t = run.targets.get(spec.name)!;
      // At 100 % the stable version serves nothing: judge against what it served before the shift.
      const baselineWindow = t.weight >= 100 ? t.baselineWindow : undefined;
      return { target: spec, stableVersion: t.stableVersion!, newVersion: t.newVersion!, ...(baselineWindow ? { baselineWindow } : {}) };
    }),
    rule: run.spec.rollback,
    startMs,
  });
  const service = run.spec.service;
  for (const v of verdicts) {
    if (!v.target) continue;
    const t = run.targets.get(v.target)!;
    t.lastAnalysis = v;
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

/**
 * Wait until `ready()` (or until `untilMs`), analysing the targets that serve new traffic every
 * interval. Returns the stop that ended the wait (abort, outside breach, failing analysis).
 */
export async function watchWhileWaiting(run: RolloutRun, ready: () => boolean, untilMs?: number): Promise<Stop | undefined> {
  let intervalMs = mustDurationMs(run.spec.rollback.interval ?? WAIT_ANALYSIS_INTERVAL);
  const waitStartMs = Date.now();
  for (;;) {
    // Runs from before continue-as-new: each analysis costs about 11 history events, so a long
    // wait slows down once the history is large and cannot reach the server's limit within weeks.
    if (!run.continueAsNewEnabled && workflowInfo().historyLength > LONG_WAIT_HISTORY && intervalMs < LONG_WAIT_INTERVAL_MS) {
      intervalMs = LONG_WAIT_INTERVAL_MS;
      run.record('decision', `long wait: analysing every ${formatDuration(intervalMs)} from now on (history is large)`);
    }
    // Nothing serves new traffic (and nothing can start to while the pipeline waits here): no
    // analysis to run, so no timer either; the wait costs no history however long it lasts.
    const idle = run.continueAsNewEnabled && run.targetsWithNewTraffic().length === 0;
    const step = idle ? undefined : intervalMs;
    const left = untilMs === undefined ? step : Math.min(step ?? Infinity, untilMs - Date.now());
    if (!ready()) {
      const parking = handOverBeforeParking(run, left);
      if (parking) return parking;
    }
    const woken = left === undefined || left > 0 ? await run.gate.waitFor(ready, left) : true;
    const stop = takePendingStop(run);
    if (stop) return stop;
    if (woken || ready() || (untilMs !== undefined && Date.now() >= untilMs)) return undefined;
    const live = run.targetsWithNewTraffic();
    if (live.length === 0) continue;
    // A sliding window of two intervals: a regression during a weekend wait is not diluted by Friday.
    const v = await analyze(run, live, Math.max(waitStartMs, Date.now() - 2 * intervalMs));
    if (v.verdict === 'fail') return stopOf('breach', v.reason);
    if (!run.continueAsNewEnabled) continue;
    if (ready()) return undefined;
    const handover = continueAsNewNow(run);
    if (handover) return handover;
  }
}

/**
 * Continue as new here? Only between two steps of a bake or a wait, with nothing pending: an
 * abort or breach that arrived meanwhile is acted on by this run. The Stop unwinds to the top of
 * the workflow within the same workflow task, so no message can arrive before the handover.
 */
export function continueAsNewNow(run: RolloutRun): Stop | undefined {
  if (!run.shouldContinueAsNew() || run.gate.pendingStop() !== undefined) return undefined;
  run.markHandover();
  return stopOf('continue-as-new', `history has ${workflowInfo().historyLength} events`);
}

/**
 * Hand over before a long wait (`waitMs`, undefined: until a message)? Same conditions as
 * continueAsNewNow, at the start of the wait: the next run parks here on a short history.
 */
export function handOverBeforeParking(run: RolloutRun, waitMs: number | undefined): Stop | undefined {
  if (!run.shouldHandOverBeforeParking(waitMs) || run.gate.pendingStop() !== undefined) return undefined;
  run.markHandover();
  return stopOf('continue-as-new', `parking with ${workflowInfo().historyLength} history events`);
}

/** Hold while an operator pause is on, still watching the targets that carry new traffic. */
export async function holdWhilePaused(run: RolloutRun): Promise<Stop | undefined> {
  if (!run.gate.paused) return takePendingStop(run);
  const before = run.detail;
  run.setDetail(`paused by operator (was: ${before})`);
  const stop = await watchWhileWaiting(run, () => !run.gate.paused);
  if (!stop) run.setDetail(before);
  return stop;
}
