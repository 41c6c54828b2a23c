/** Helpers for tests of shared-dependency locks. */
import { randomBytes } from 'node:crypto';

const utcLocal = (ms: number) => new Date(ms).toISOString().slice(0, 19);
/** Lock names are global on the dev server: one per test. */
export const uniqueDep = (name: string) => `${name}-${randomBytes(3).toString('hex')}`;
/** A freeze window for the next half hour: the rollout holds its lock, frozen before its first traffic step. */
export const holdingFreeze = () => [
  { name: 'hold', timezone: 'UTC', from: utcLocal(Date.now() - 60_000), to: utcLocal(Date.now() + 30 * 60_000) },
];
