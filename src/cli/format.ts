import { formatDuration } from '../spec/duration';
import { describeCommand, specCommands } from '../spec/plan';
import type { RolloutStatus } from '../contract';

export function weightBar(percent: number, width = 20): string {
  const filled = Math.round((Math.max(0, Math.min(100, percent)) / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

export function formatStatus(s: RolloutStatus, nowMs = Date.now()): string {
  const lines = [
    `${s.id}  ${s.service} ${s.release}  state=${s.state}  stage=${s.stage}${(s.pass ?? 1) > 1 ? `  pass ${s.pass}` : ''}`,
    `  ${s.detail}`,
  ];
  if (s.bakeEndsAtMs && s.state === 'running') lines.push(`  bake ends in ${formatDuration(s.bakeEndsAtMs - nowMs)}`);
  if (s.awaitingApproval) lines.push(`  awaiting approval for wave ${s.awaitingApproval}`);
  if (s.artifactDigest) lines.push(`  artifact sha256 ${s.artifactDigest}`);
  // Verified identities: say who started it and whether anyone checked (absent in older rollouts).
  if (s.starter)
    lines.push(`  started by ${s.starter.name}${s.starter.verified ? ` (verified, sub ${s.starter.subject})` : ' (unverified)'}`);
  // Status answers of rollouts recorded before the runner split may lack a spec; old specs have plain strings.
  const commands = s.spec ? specCommands(s.spec) : [];
  if (commands.length) {
    lines.push('  commands (on the runner):');
    for (const c of commands) lines.push(`    ${c.field}: ${describeCommand(c)}`);
  }
  lines.push('  targets:');
  // Columns as wide as their longest value (Cloud Run revision names are longer than Lambda versions).
  const width = (f: (t: RolloutStatus['targets'][number]) => string, min: number) => Math.max(min, ...s.targets.map((t) => f(t).length));
  const w = {
    name: width((t) => t.name, 14),
    provider: width((t) => t.provider, 10),
    stable: width((t) => t.stableVersion ?? '-', 6),
    next: width((t) => t.newVersion ?? '-', 6),
  };
  for (const t of s.targets)
    lines.push(
      `    ${t.name.padEnd(w.name)} ${t.provider.padEnd(w.provider)} stable=${(t.stableVersion ?? '-').padEnd(w.stable)} new=${(t.newVersion ?? '-').padEnd(w.next)} ${weightBar(t.weight)} ${t.weight} %`,
    );
  if (s.lastAnalysis) lines.push(`  last analysis: ${s.lastAnalysis.verdict}: ${s.lastAnalysis.reason}`);
  for (const p of s.parityWarnings ?? []) lines.push(`  parity warning: ${p}`);
  if (s.rollbackReason) lines.push(`  rollback reason: ${s.rollbackReason}`);
  return lines.join('\n');
}

/**
 * Exit codes of the CLI. `start --wait` and `watch` end with one per outcome, so a CI job can
 * branch on it; every other command uses 0, 1 and 2 only.
 */
export const EXIT_CODES = {
  ok: 0,
  error: 1,
  usage: 2,
  'rolled-back': 3,
  'rollback-failed': 4,
  aborted: 5,
  failed: 6,
  timeout: 7,
  'awaiting-approval': 8,
} as const;

export const EXIT_CODE_TABLE: [number, string][] = [
  [EXIT_CODES.ok, 'ok; for start --wait / watch: the rollout succeeded (promoted everywhere)'],
  [EXIT_CODES.error, 'error: refused, not found, cannot connect'],
  [EXIT_CODES.usage, 'invalid input: bad spec or arguments (nothing started)'],
  [EXIT_CODES['rolled-back'], 'rolled back: the pipeline is paused after a rollback (resume/abort), or closed as rolled-back'],
  [EXIT_CODES['rollback-failed'], 'rollback failed: a revert failed, a target may still serve the new version (resume/abort)'],
  [EXIT_CODES.aborted, 'aborted by an operator (touched targets reverted)'],
  [EXIT_CODES.failed, 'failed before any traffic moved (build, test, migrate), or the workflow was terminated/timed out'],
  [EXIT_CODES.timeout, '--timeout elapsed; the rollout goes on'],
  [EXIT_CODES['awaiting-approval'], 'waiting for an approval (only with --exit-on-approval)'],
];

export function exitCodeHelp(): string {
  return `\nExit codes:\n${EXIT_CODE_TABLE.map(([c, t]) => `  ${c}  ${t}`).join('\n')}\n`;
}
