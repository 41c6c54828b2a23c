/** `rollgate plan`: what a spec will do, step by step, and its minimum duration. Pure. */
import { formatDuration, mustDurationMs } from './duration';
import type { RolloutSpec } from './schema';
import { commandArgv, type CommandLine } from './argv';

export interface PlanStep {
  stage: string;
  action: string;
  bakeMs: number;
  approval?: boolean;
  /** The commands the runner runs in this stage: argv exactly, whether a shell runs it, the declared env's keys. */
  commands?: PlanCommand[];
}

export interface PlanCommand {
  field: string;
  argv: string[];
  shell: boolean;
  env: string[];
}

function planCommand(
  field: string,
  command: CommandLine,
  shell: boolean | undefined,
  env: Record<string, string> | undefined,
): PlanCommand {
  let argv: string[];
  try {
    argv = commandArgv(command, shell);
  } catch {
    argv = typeof command === 'string' ? [command] : command;
  }
  return { field, argv, shell: !!shell, env: Object.keys(env ?? {}) };
}

/** How plan and status show a command: argv as JSON, or the shell string, and the declared env keys. */
export function describeCommand(c: PlanCommand): string {
  const how = c.shell ? `shell: bash -c ${JSON.stringify(c.argv[2] ?? '')}` : `argv ${JSON.stringify(c.argv)} (no shell)`;
  return `${how}${c.env.length ? ` with env ${c.env.join(', ')}` : ''}`;
}

/** Every command of a spec, in the order the runner runs them. */
export function specCommands(spec: RolloutSpec): PlanCommand[] {
  const out: PlanCommand[] = [];
  const b = spec.artifact.build;
  if (b) out.push(planCommand('artifact.build.command', b.command, b.shell, b.env));
  if (spec.test) out.push(planCommand('test.command', spec.test.command, spec.test.shell, spec.test.env));
  const m = spec.migration;
  if (m) {
    out.push(planCommand('migration.command', m.command, m.shell, m.env));
    out.push(planCommand('migration.current_command', m.current_command, m.shell, m.env));
  }
  return out;
}

export interface RolloutPlan {
  service: string;
  release: string;
  steps: PlanStep[];
  /** Sum of all bakes: the least time the rollout can take (approvals and freezes add to it). */
  minimumDurationMs: number;
  approvals: number;
}

export function planRollout(spec: RolloutSpec): RolloutPlan {
  const steps: PlanStep[] = [];
  const cmds = specCommands(spec);
  const of = (field: string) => cmds.filter((c) => c.field.startsWith(field));
  const artifact = spec.artifact.build
    ? `run ${describeCommand(of('artifact.build')[0])} on the runner, record sha256 of ${spec.artifact.build.output}`
    : spec.artifact.file
      ? `use ${spec.artifact.file}${spec.artifact.sha256 ? ` (sha256 ${spec.artifact.sha256.slice(0, 12)}…)` : ''}`
      : `use image ${spec.artifact.image}`;
  steps.push({ stage: 'build', action: artifact, bakeMs: 0, ...(spec.artifact.build ? { commands: of('artifact.build') } : {}) });
  if (spec.test)
    steps.push({ stage: 'test', action: `run ${describeCommand(of('test')[0])} on the runner`, bakeMs: 0, commands: of('test') });
  if (spec.migration) {
    const [migrate, current] = of('migration');
    steps.push({
      stage: 'migrate',
      action: `run ${describeCommand(migrate)} on the runner, then ${describeCommand(current)} must print schema_rev ${spec.schema_rev}`,
      bakeMs: 0,
      commands: [migrate, current],
    });
  }
  steps.push({
    stage: 'deploy',
    action: `publish a new revision with 0 % traffic on ${spec.targets.map((t) => t.name).join(', ')}`,
    bakeMs: 0,
  });
  steps.push({
    stage: 'verify',
    action: `${spec.probes.length} probe(s), contract (release ${spec.release}, schema_rev ${spec.schema_rev}), env drift, metrics preflight`,
    bakeMs: 0,
  });
  steps.push({
    stage: 'canary',
    action: `${spec.canary.weight} % on ${spec.canary.targets.join(', ')}, bake ${spec.canary.bake}`,
    bakeMs: mustDurationMs(spec.canary.bake),
  });
  for (const w of spec.waves) {
    if (w.approval)
      steps.push({ stage: `wave:${w.name}`, action: `wait for approval (${spec.approvers.join(', ')})`, bakeMs: 0, approval: true });
    for (const s of w.steps)
      steps.push({ stage: `wave:${w.name}`, action: `${s} % on ${w.targets.join(', ')}, bake ${w.bake}`, bakeMs: mustDurationMs(w.bake) });
  }
  steps.push({ stage: 'promote', action: 'all targets 100 % on the new version, record the release', bakeMs: 0 });
  return {
    service: spec.service,
    release: spec.release,
    steps,
    minimumDurationMs: steps.reduce((a, s) => a + s.bakeMs, 0),
    approvals: steps.filter((s) => s.approval).length,
  };
}

export function formatPlan(p: RolloutPlan): string {
  const lines = [`plan for ${p.service} ${p.release}:`];
  p.steps.forEach((s, i) => lines.push(`  ${String(i + 1).padStart(2)}. ${s.stage.padEnd(16)} ${s.action}`));
  lines.push(
    `minimum duration ${formatDuration(p.minimumDurationMs)} (bakes only${p.approvals ? `; plus ${p.approvals} approval(s)` : ''}; freeze windows and no-data extensions add to it)`,
  );
  return lines.join('\n');
}
