import { formatDuration } from '../spec/duration';
import type { RolloutStatus } from '../workflows/messages';

export function weightBar(percent: number, width = 20): string {
  const filled = Math.round((Math.max(0, Math.min(100, percent)) / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

export function formatStatus(s: RolloutStatus, nowMs = Date.now()): string {
  const lines = [`${s.id}  ${s.service} ${s.release}  state=${s.state}  stage=${s.stage}`, `  ${s.detail}`];
  if (s.bakeEndsAtMs && s.state === 'running') lines.push(`  bake ends in ${formatDuration(s.bakeEndsAtMs - nowMs)}`);
  if (s.awaitingApproval) lines.push(`  awaiting approval for wave ${s.awaitingApproval}`);
  if (s.artifactDigest) lines.push(`  artifact sha256 ${s.artifactDigest}`);
  lines.push('  targets:');
  for (const t of s.targets)
    lines.push(
      `    ${t.name.padEnd(14)} ${t.provider.padEnd(10)} stable=${(t.stableVersion ?? '-').padEnd(6)} new=${(t.newVersion ?? '-').padEnd(6)} ${weightBar(t.weight)} ${t.weight} %`,
    );
  if (s.lastAnalysis) lines.push(`  last analysis: ${s.lastAnalysis.verdict}: ${s.lastAnalysis.reason}`);
  if (s.rollbackReason) lines.push(`  rollback reason: ${s.rollbackReason}`);
  return lines.join('\n');
}
