/**
 * Seeded fault schedules for release trains: two or three generated member specs (targets named
 * per member, one environment for all), a random dependency order (sometimes lockstep), each
 * member's own schedule from `generateSchedule` (about half of them calm), and the train's own
 * events: an operator pause, an abort at a member's stage or while a member waits for approval,
 * worker kills. Stage triggers name the member whose status shows the stage; `await:WAVE` is the
 * moment that member first waits for the approval of WAVE.
 */
import type { RolloutSpec } from '../../src/spec/schema';
import type { Rng } from './prng';
import { generateSpec } from './spec-gen';
import { describeSchedule, generateSchedule, type FaultSchedule, type TimedAction, type Trigger } from './fault-gen';

export type TrainAction = TimedAction | { kind: 'train-pause'; resumeAfterMs?: number; abortAfterMs?: number } | { kind: 'train-abort' };

export interface TrainEvent {
  /** The member whose stages the trigger names (and which a member action acts on); none: the train. */
  member?: number;
  trigger: Trigger;
  action: TrainAction;
}

export interface TrainMemberPlan {
  service: string;
  spec: RolloutSpec;
  shape: string;
  dependsOn: string[];
  /** The member's own schedule: its provider faults, approvals and what its operator does in rollback-failed. */
  schedule: FaultSchedule;
}

export interface TrainSchedule {
  members: TrainMemberPlan[];
  lockstep: boolean;
  events: TrainEvent[];
  /** After the train pauses with its alert: run the whole train again once (breach and faults cleared or not), or close it. */
  afterRollback: { resumeOnce: boolean; clearBreach: boolean };
  webhookFaults?: { n: number; status: number };
}

/** Member events that do not stop a member: what a calm member keeps of its schedule. */
function calmEvent(a: TimedAction): boolean {
  return a.kind === 'slow-operations' || (a.kind === 'pause' && a.resumeAfterMs !== undefined);
}

export function generateTrainSchedule(rng: Rng, o: { train: string; webhookEnv: string; workDir: string; kills: boolean }): TrainSchedule {
  const n = rng.int(2, 3);
  const members: TrainMemberPlan[] = [];
  const events: TrainEvent[] = [];
  for (let i = 0; i < n; i++) {
    const service = `${o.train}-m${i}`;
    const { spec, shape } = generateSpec(rng, { service, webhookEnv: o.webhookEnv, workDir: o.workDir, namePrefix: `m${i}` });
    const schedule = generateSchedule(rng, spec, { kills: false });
    if (!rng.chance(0.5)) {
      // A calm member: transient faults and resumed pauses only, every approval given.
      schedule.calm = true;
      schedule.providerFaults = schedule.providerFaults.filter((f) => f.note === 'transient');
      schedule.events = schedule.events.filter((e) => calmEvent(e.action));
      for (const w of Object.keys(schedule.approvals))
        schedule.approvals[w] = { decision: 'approve', afterMs: schedule.approvals[w].afterMs };
    }
    const dependsOn =
      i === 0 || rng.chance(0.3) ? [] : rng.chance(0.3) && i === 2 ? [members[0].service, members[1].service] : [rng.pick(members).service];
    members.push({ service, spec, shape, dependsOn, schedule });
    for (const e of schedule.events) events.push({ member: i, ...e });
  }
  const lockstep = rng.chance(0.25);
  const stagesOf = (m: TrainMemberPlan) => ['deploy', 'verify', 'canary', ...m.spec.waves.map((w) => `wave:${w.name}`)];

  // The train's operator: a pause (resumed, or aborted), an abort at some member's stage.
  if (rng.chance(0.25)) {
    const m = rng.int(0, n - 1);
    const resume = rng.chance(0.75);
    events.push({
      member: m,
      trigger: { stage: rng.pick(stagesOf(members[m])), delayMs: rng.int(0, 1500) },
      action: { kind: 'train-pause', ...(resume ? { resumeAfterMs: rng.int(300, 3000) } : { abortAfterMs: rng.int(300, 2000) }) },
    });
  }
  if (rng.chance(0.2)) {
    const m = rng.int(0, n - 1);
    events.push({
      member: m,
      trigger: { stage: rng.pick(stagesOf(members[m])), delayMs: rng.int(0, 1500) },
      action: { kind: 'train-abort' },
    });
  }
  // An abort of the train while a member waits for an approval (given late, or never).
  const approvalWaves = members.flatMap((m, i) => Object.keys(m.schedule.approvals).map((w) => ({ i, w })));
  if (approvalWaves.length && rng.chance(0.5)) {
    const { i, w } = rng.pick(approvalWaves);
    members[i].schedule.approvals[w] = { decision: rng.pick(['approve', 'leave'] as const), afterMs: rng.int(500, 2500) };
    events.push({ member: i, trigger: { stage: `await:${w}`, delayMs: rng.int(0, 2500) }, action: { kind: 'train-abort' } });
  }
  if (o.kills) {
    const kills = rng.int(1, 2);
    for (let k = 0; k < kills; k++) {
      const m = rng.int(0, n - 1);
      events.push({
        member: m,
        trigger: { stage: rng.pick([...stagesOf(members[m]), 'rollback']), delayMs: rng.int(0, 1500) },
        action: { kind: 'kill', restartAfterMs: rng.int(200, 2000) },
      });
    }
  }
  return {
    members,
    lockstep,
    events,
    afterRollback: { resumeOnce: rng.chance(0.3), clearBreach: rng.chance(0.5) },
    ...(rng.chance(0.2) ? { webhookFaults: { n: rng.int(1, 2), status: rng.pick([500, 503, 429]) } } : {}),
  };
}

export function describeTrainShape(s: TrainSchedule): string {
  const members = s.members.map(
    (m, i) =>
      `m${i}${m.dependsOn.length ? ` after ${m.dependsOn.map((d) => d.slice(d.lastIndexOf('-') + 1)).join('+')}` : ''} (${m.shape})`,
  );
  return `train of ${s.members.length}${s.lockstep ? ', lockstep' : ''}: ${members.join(' | ')}`;
}

export function describeTrainSchedule(s: TrainSchedule): string {
  const trig = (t: Trigger) => ('stage' in t ? `@${t.stage}+${t.delayMs}ms` : `@${t.atMs}ms`);
  const own = s.events.filter((e) => e.action.kind.startsWith('train-') || e.action.kind === 'kill' || e.action.kind === 'server-restart');
  return [
    ...s.members.map((m, i) => `m${i}: ${describeSchedule({ ...m.schedule, events: [] }) || 'calm'}`),
    ...s.events.filter((e) => !own.includes(e)).map((e) => `m${e.member} ${e.action.kind}${trig(e.trigger)}`),
    ...own.map((e) => `${e.action.kind}${e.member !== undefined ? ` m${e.member}` : ''}${trig(e.trigger)}`),
    s.afterRollback.resumeOnce ? `after the train's pause: resume once${s.afterRollback.clearBreach ? ' (cleared)' : ''}` : '',
    s.webhookFaults ? `webhook ${s.webhookFaults.status} x${s.webhookFaults.n}` : '',
  ]
    .filter(Boolean)
    .join(', ');
}
