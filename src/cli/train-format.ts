/** Text for `rollgate status/watch TRAIN`: the train, then each member with its stage and weights. */
import type { TrainView } from '../train-client';
import { weightBar } from './format';

export function formatTrain(v: TrainView): string {
  const s = v.status;
  const lines = [
    `${s.id}  train ${s.train}${s.lockstep ? ` (lockstep, stage ${s.wave})` : ''}  state=${s.state}  pass ${s.pass}`,
    `  ${s.detail}`,
    `  order: ${s.order.join(' -> ')}`,
  ];
  if (s.stoppedBy) lines.push(`  stopped by ${s.stoppedBy}; reverted (dependents first): ${s.reverted.join(', ') || 'nothing else'}`);
  for (const m of s.members) {
    const r = v.members[m.service];
    const after = m.dependsOn.length ? ` after ${m.dependsOn.join(', ')}` : '';
    lines.push(`  ${m.service} ${m.release}${after}: ${m.state}${r ? ` (${m.rolloutId}: stage ${r.stage}, ${r.detail})` : ''}`);
    for (const t of r?.targets ?? []) lines.push(`      ${t.name.padEnd(16)} ${weightBar(t.weight, 10)} ${t.weight} %`);
    if (m.reason && m.state !== 'succeeded') lines.push(`      ${m.reason}`);
  }
  return lines.join('\n');
}
