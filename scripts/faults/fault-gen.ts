/**
 * Seeded fault schedules: what goes wrong, where and when, for one generated spec.
 *
 * Provider faults are armed before the rollout starts and count calls per target ("the 2nd traffic
 * write of target X fails with AccessDenied"), so they hit the same step on every run of a seed.
 * Operator actions, verdicts, breaches and worker kills fire on a trigger: a stage first seen in
 * the rollout's status (plus a delay), or a time since the start.
 */
import type { RolloutSpec, TargetSpec } from '../../src/spec/schema';
import type { Rng } from './prng';

export type Trigger = { stage: string; delayMs: number } | { atMs: number };

/** A provider call fault on one target. `op` is the kind of call, per provider. */
export interface ProviderFault {
  kind: 'provider';
  target: string;
  /** traffic = Lambda UpdateAlias / Cloud Run UpdateService (deploy included); read = GetAlias / GetService; publish = Lambda PublishVersion, op = GetOperation. */
  op: 'traffic' | 'read' | 'publish' | 'operation';
  /** Let this many matching calls through first. */
  skip: number;
  times: number;
  action: 'throttle' | 'server-error' | 'slow' | 'access-denied';
  delayMs?: number;
  /** Why it is there (for reports). */
  note: string;
}

export type TimedAction =
  | { kind: 'pause'; resumeAfterMs?: number; abortAfterMs?: number }
  | { kind: 'resume' }
  | { kind: 'abort' }
  | { kind: 'verdict' }
  | { kind: 'breach'; targets: string[] }
  | { kind: 'slow-operations'; polls: number }
  | { kind: 'kill'; restartAfterMs: number }
  /** Stop the Temporal dev server and start it again on the same SQLite file after `downMs`. */
  | { kind: 'server-restart'; downMs: number }
  /** Break every revert of a target (AccessDenied / PERMISSION_DENIED on its traffic writes) from now on. */
  | { kind: 'break-reverts'; target: string };

export interface TimedEvent {
  trigger: Trigger;
  action: TimedAction;
}

export interface FaultSchedule {
  /** No stop planned (no breach, abort, verdict, rejection, non-retryable fault): the rollout must promote. */
  calm: boolean;
  providerFaults: ProviderFault[];
  events: TimedEvent[];
  /** Per approval wave: what the operator does when asked, and after how long. */
  approvals: Record<string, { decision: 'approve' | 'reject' | 'leave'; afterMs: number }>;
  /** After a rollback pauses the pipeline: resume it once (with the breach cleared or not), or close it. */
  afterRollback: { resumeOnce: boolean; clearBreach: boolean };
  /** In rollback-failed: fix the target (clear faults) then abort, or resume first. */
  afterRollbackFailed: 'abort' | 'resume';
  /** Webhook answers: fail the first N posts with this status. */
  webhookFaults?: { n: number; status: number };
}

const KILLABLE_STAGES = ['deploy', 'verify', 'canary', 'rollback', 'promote'];

/**
 * A dev-server restart at a random moment of the first seconds (every schedule runs longer; deploy,
 * verify, the canary and often a revert happen then). From a PRNG of its own, so the rest of a
 * seed's schedule is what it is without restarts.
 */
export function serverRestartEvent(rng: Rng): TimedEvent {
  return { trigger: { atMs: rng.int(1_000, 7_000) }, action: { kind: 'server-restart', downMs: rng.int(0, 2000) } };
}

/** The stages a target's traffic changes in (canary, its wave). */
function stagesOf(spec: RolloutSpec, target: string): string[] {
  const out: string[] = [];
  if (spec.canary.targets.includes(target)) out.push('canary');
  for (const w of spec.waves) if (w.targets.includes(target)) out.push(`wave:${w.name}`);
  return out;
}

/**
 * Calls of kind "traffic" a target sees before step `stepIndex` of `wave`: Cloud Run's deploy is an
 * UpdateService, Lambda's is not an alias write; the canary step is one more.
 */
function trafficWritesBefore(spec: RolloutSpec, t: TargetSpec, wave: RolloutSpec['waves'][number], stepIndex: number): number {
  let n = t.provider === 'cloud-run' ? 1 : 0;
  if (spec.canary.targets.includes(t.name)) n++;
  for (const w of spec.waves) {
    if (w === wave) break;
    if (w.targets.includes(t.name)) n += w.steps.length;
  }
  return n + stepIndex;
}

export function generateSchedule(rng: Rng, spec: RolloutSpec, o: { kills: boolean }): FaultSchedule {
  const providerFaults: ProviderFault[] = [];
  const events: TimedEvent[] = [];
  const byName = new Map(spec.targets.map((t) => [t.name, t]));
  const stageNames = ['canary', ...spec.waves.map((w) => `wave:${w.name}`)];

  // 1. Transient provider faults (429, 5xx, slow answers) sprinkled over random targets and calls.
  const nTransient = rng.int(0, 4);
  for (let i = 0; i < nTransient; i++) {
    const t = rng.pick(spec.targets);
    const action = rng.pick(['throttle', 'server-error', 'slow'] as const);
    providerFaults.push({
      kind: 'provider',
      target: t.name,
      op: rng.pick(t.provider === 'aws-lambda' ? (['traffic', 'read', 'publish'] as const) : (['traffic', 'read', 'operation'] as const)),
      skip: rng.int(0, 3),
      times: rng.int(1, 3),
      action,
      ...(action === 'slow' ? { delayMs: rng.int(300, 2500) } : {}),
      note: 'transient',
    });
  }

  // A third of the schedules are calm: transient faults, slow operations, pauses and kills only,
  // no stop; they must promote.
  const calm = rng.chance(0.33);

  // 2. The race of issue 9.1: one target of a wave fails non-retryably on a traffic step while its
  //    siblings' writes for the same step are slow (in flight when the saga starts).
  const raceWave = !calm && rng.chance(0.5) ? rng.pick(spec.waves) : undefined;
  if (raceWave) {
    const step = rng.int(0, raceWave.steps.length - 1);
    const [victim, ...siblings] = rng.shuffle(raceWave.targets);
    const vt = byName.get(victim)!;
    const breakRevert = rng.chance(0.25);
    providerFaults.push({
      kind: 'provider',
      target: victim,
      op: 'traffic',
      skip: trafficWritesBefore(spec, vt, raceWave, step),
      // With breakRevert the victim's revert fails too: rollback-failed, then the checker fixes it.
      times: breakRevert ? 40 : 1,
      action: 'access-denied',
      note: `non-retryable on ${victim} at ${raceWave.name} step ${raceWave.steps[step]} %${breakRevert ? ', and its reverts' : ''}`,
    });
    for (const s of siblings)
      providerFaults.push({
        kind: 'provider',
        target: s,
        op: 'traffic',
        skip: trafficWritesBefore(spec, byName.get(s)!, raceWave, step),
        times: rng.int(1, 2),
        action: 'slow',
        delayMs: rng.int(800, 3000),
        note: `sibling of ${victim} in flight`,
      });
  }

  // 3. Slow Cloud Run operations (GetOperation polls before an update completes), from some stage on.
  if (rng.chance(0.3))
    events.push({
      trigger: { stage: rng.pick(['deploy', ...stageNames]), delayMs: 0 },
      action: { kind: 'slow-operations', polls: rng.int(3, 8) },
    });

  // 4. A metric breach: the new version of some targets starts failing 30 % of requests.
  if (!calm && rng.chance(0.35)) {
    const t = rng.pick(spec.targets);
    const when = rng.pick(['deploy', ...stagesOf(spec, t.name)]);
    events.push({ trigger: { stage: when, delayMs: rng.int(0, 800) }, action: { kind: 'breach', targets: [t.name] } });
  }

  // 5. Operator actions and external verdicts at random moments.
  if (rng.chance(0.3)) {
    const resume = calm || rng.chance(0.75);
    events.push({
      trigger: { stage: rng.pick(['verify', ...stageNames]), delayMs: rng.int(0, 1500) },
      action: { kind: 'pause', ...(resume ? { resumeAfterMs: rng.int(300, 3000) } : { abortAfterMs: rng.int(300, 2000) }) },
    });
  }
  if (!calm && rng.chance(0.2))
    events.push({
      trigger: { stage: rng.pick(['deploy', 'verify', ...stageNames]), delayMs: rng.int(0, 1500) },
      action: { kind: 'abort' },
    });
  if (!calm && rng.chance(0.25))
    events.push({ trigger: { stage: rng.pick(stageNames), delayMs: rng.int(0, 1500) }, action: { kind: 'verdict' } });
  if (rng.chance(0.1)) events.push({ trigger: { atMs: rng.int(500, 8000) }, action: { kind: 'resume' } });
  // A stop while one target's reverts are broken: rollback-failed.
  if (!calm && rng.chance(0.15)) {
    const stage = rng.pick(stageNames);
    const t = rng.pick(spec.targets);
    const delayMs = rng.int(0, 800);
    events.push({ trigger: { stage, delayMs }, action: { kind: 'break-reverts', target: t.name } });
    events.push({ trigger: { stage, delayMs: delayMs + 50 }, action: { kind: rng.chance(0.5) ? 'verdict' : 'abort' } });
  }

  // 6. Worker SIGKILLs (mid-deploy and mid-revert included), restarted after a moment.
  if (o.kills) {
    const n = rng.int(1, 2);
    for (let i = 0; i < n; i++)
      events.push({
        trigger: { stage: rng.pick([...KILLABLE_STAGES, ...stageNames]), delayMs: rng.int(0, 1500) },
        action: { kind: 'kill', restartAfterMs: rng.int(200, 2000) },
      });
  }

  const approvals: FaultSchedule['approvals'] = {};
  for (const w of spec.waves)
    if (w.approval)
      approvals[w.name] = {
        decision: calm ? 'approve' : rng.pick(['approve', 'approve', 'reject', 'leave'] as const),
        afterMs: rng.int(0, 1500),
      };

  return {
    calm,
    providerFaults,
    events,
    approvals,
    afterRollback: { resumeOnce: rng.chance(0.3), clearBreach: rng.chance(0.5) },
    afterRollbackFailed: rng.pick(['abort', 'resume'] as const),
    ...(rng.chance(0.2) ? { webhookFaults: { n: rng.int(1, 2), status: rng.pick([500, 503, 429]) } } : {}),
  };
}

export function describeSchedule(s: FaultSchedule): string {
  const trig = (t: Trigger) => ('stage' in t ? `@${t.stage}+${t.delayMs}ms` : `@${t.atMs}ms`);
  return [
    s.calm ? 'calm' : '',
    ...s.providerFaults.map((f) => `${f.action}${f.delayMs ? `(${f.delayMs}ms)` : ''} ${f.op} ${f.target} skip ${f.skip} x${f.times}`),
    ...s.events.map((e) => `${e.action.kind}${trig(e.trigger)}`),
    ...Object.entries(s.approvals).map(([w, a]) => `${a.decision} ${w}`),
    s.webhookFaults ? `webhook ${s.webhookFaults.status} x${s.webhookFaults.n}` : '',
  ]
    .filter(Boolean)
    .join(', ');
}
