/** `rollgate plan`: what a spec will do, step by step, and its minimum duration. Pure. */
import { formatDuration, mustDurationMs } from './duration';
import type { RolloutSpec } from './schema';

export interface PlanStep {
  stage: string;
  action: string;
  bakeMs: number;
  approval?: boolean;
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
  const artifact = spec.artifact.build
    ? `run \`${spec.artifact.build.command}\`, record sha256 of ${spec.artifact.build.output}`
    : spec.artifact.file
      ? `use ${spec.artifact.file}${spec.artifact.sha256 ? ` (sha256 ${spec.artifact.sha256.slice(0, 12)}…)` : ''}`
      : `use image ${spec.artifact.image}`;
  steps.push({ stage: 'build', action: artifact, bakeMs: 0 });
  if (spec.test) steps.push({ stage: 'test', action: `run \`${spec.test.command}\``, bakeMs: 0 });
  if (spec.migration)
    steps.push({ stage: 'migrate', action: `run \`${spec.migration.command}\`, expect schema_rev ${spec.schema_rev}`, bakeMs: 0 });
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
