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
  if (s.rollbackReason) lines.push(`  rollback reason: ${s.rollbackReason}`);
  return lines.join('\n');
}
