import { createHmac } from 'node:crypto';
import type { EnvFingerprint } from './types';
import { isReleaseContractKey } from '../contract/release';

/**
 * A short salted hash of one env value. The salt is the worker's key (`ROLLGATE_HASH_KEY`, random
 * per process by default, not per rollout), so the hash tells "changed or not" between two
 * revisions hashed by the same process (both sides are hashed in one call) without letting anyone
 * look a low-entropy secret up in a table.
 */
export function saltedHash(salt: string, key: string, value: string): string {
  return createHmac('sha256', salt).update(key).update('\0').update(value).digest('hex').slice(0, 12);
}

export interface DriftReport {
  /** Keys the stable revision has and the new one lacks: these fail the verify stage. */
  missing: string[];
  /** Keys whose value changed, with the two salted hashes (never values). */
  changed: { key: string; stable: string; next: string }[];
  added: string[];
  /** Secret references whose name/version differ. */
  secretRefsChanged: { key: string; stable?: string; next?: string }[];
}

/** Keys every release sets itself; their change is expected, not drift. */

export function compareFingerprints(stable: EnvFingerprint, next: EnvFingerprint): DriftReport {
  const missing: string[] = [];
  const changed: DriftReport['changed'] = [];
  const added: string[] = [];
  for (const [k, h] of Object.entries(stable.values)) {
    if (isReleaseContractKey(k)) continue;
    if (!(k in next.values)) missing.push(k);
    else if (next.values[k] !== h) changed.push({ key: k, stable: h, next: next.values[k] });
  }
  for (const k of Object.keys(next.values)) if (!(k in stable.values) && !isReleaseContractKey(k)) added.push(k);
  const secretRefsChanged: DriftReport['secretRefsChanged'] = [];
  for (const k of new Set([...Object.keys(stable.secretRefs), ...Object.keys(next.secretRefs)])) {
    if (stable.secretRefs[k] !== next.secretRefs[k]) {
      if (!(k in next.secretRefs)) missing.push(k);
      secretRefsChanged.push({ key: k, stable: stable.secretRefs[k], next: next.secretRefs[k] });
    }
  }
  return { missing: missing.sort(), changed, added: added.sort(), secretRefsChanged };
}
