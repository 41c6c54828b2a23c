/** The train fault-schedule generator (no servers): valid trains, reproducible from the seed, every kind of event drawn. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateTrain } from '../src/spec/train';
import { Rng } from '../scripts/faults/prng';
import { describeTrainSchedule, generateTrainSchedule } from '../scripts/faults/train-gen';

const workDir = mkdtempSync(join(tmpdir(), 'train-gen-'));
const gen = (seed: number) =>
  generateTrainSchedule(new Rng(seed), { train: `tz${seed}`, webhookEnv: 'ROLLGATE_WEBHOOK_FAULTS', workDir, kills: true });

test('200 seeds: each train validates (no cycle, members known), target names are unique across members, triggers name a member stage', () => {
  const kinds = new Set<string>();
  for (let seed = 1; seed <= 200; seed++) {
    const plan = gen(seed);
    expect(plan.members.length).toBeGreaterThanOrEqual(2);
    const train = validateTrain(
      { train: `tz${seed}`, lockstep: plan.lockstep, services: plan.members.map((m) => ({ spec: m.spec, depends_on: m.dependsOn })) },
      workDir,
    );
    expect(train.members.map((m) => m.service)).toEqual(plan.members.map((m) => m.service));
    const names = plan.members.flatMap((m) => m.spec.targets.map((t) => t.name));
    expect(new Set(names).size).toBe(names.length);
    for (const e of plan.events) {
      kinds.add(e.action.kind);
      expect(e.member).toBeDefined();
      const m = plan.members[e.member!];
      if ('stage' in e.trigger && e.trigger.stage.startsWith('await:'))
        expect(m.spec.waves.map((w) => w.name)).toContain(e.trigger.stage.slice(6));
      if (e.action.kind === 'breach') for (const t of e.action.targets) expect(m.spec.targets.map((x) => x.name)).toContain(t);
    }
  }
  // The pairs that matter are drawn: member stops, the train's abort and pause, kills, broken reverts.
  for (const k of ['breach', 'verdict', 'abort', 'break-reverts', 'train-abort', 'train-pause', 'kill']) expect(kinds).toContain(k);
});

test('a seed gives the same train and schedule every time', () => {
  const a = gen(42);
  const b = gen(42);
  expect(describeTrainSchedule(b)).toBe(describeTrainSchedule(a));
  expect(b.members.map((m) => [m.service, m.dependsOn, m.shape])).toEqual(a.members.map((m) => [m.service, m.dependsOn, m.shape]));
});
