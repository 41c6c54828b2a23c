/**
 * The traffic algebra of Cloud Run, pure (no client, no activity context): integer splits, the
 * deploy-time list that pins LATEST, kept tags, the served split, and an order-insensitive key to
 * compare what is asked with what the service reports. The provider (cloud-run.ts) does the calls.
 */
import type { google } from '@google-cloud/run/build/protos/protos';
import { NonRetryableProviderError } from './types';

type IService = google.cloud.run.v2.IService;
type ITrafficTarget = google.cloud.run.v2.ITrafficTarget;

export const TYPE_REVISION = 'TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION';
export const TYPE_LATEST = 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST';

/**
 * Integer percent Cloud Run can route: rounded, and never rounded to 0 or 100 when the caller
 * asked for a real split (0.3 % becomes 1 %, 99.7 % becomes 99 %).
 */
export function cloudRunPercent(percent: number): number {
  if (!Number.isFinite(percent)) throw new NonRetryableProviderError(`traffic percent ${percent} is not a number`, 'InvalidWeight');
  if (percent <= 0) return 0;
  if (percent >= 100) return 100;
  return Math.min(99, Math.max(1, Math.round(percent)));
}

/** The two-revision split: explicit REVISION targets, integer percents summing to 100, tag on the new one. */
export function cloudRunSplit(stable: string, next: string, percent: number, tag?: string): ITrafficTarget[] {
  if (!stable || !next) throw new NonRetryableProviderError('a split needs two revision names', 'InvalidRevision');
  if (stable === next) throw new NonRetryableProviderError(`stable and new revision are the same (${stable})`, 'InvalidRevision');
  const p = cloudRunPercent(percent);
  const targets: ITrafficTarget[] = [];
  if (100 - p > 0) targets.push({ type: TYPE_REVISION, revision: stable, percent: 100 - p });
  targets.push({ type: TYPE_REVISION, revision: next, percent: p, ...(tag ? { tag } : {}) });
  if (p === 0 && !tag) targets.pop();
  validateTraffic(targets);
  return targets;
}

/** Our own check before Cloud Run's: integer percents in 0..100 that sum to 100, unique tags. */
export function validateTraffic(targets: ITrafficTarget[]): void {
  let sum = 0;
  const tags = new Set<string>();
  for (const t of targets) {
    const p = t.percent ?? 0;
    if (!Number.isInteger(p) || p < 0 || p > 100)
      throw new NonRetryableProviderError(`traffic percent ${p} must be an integer in 0..100`, 'InvalidTraffic');
    if (t.type === TYPE_REVISION && !t.revision)
      throw new NonRetryableProviderError('REVISION traffic target without a revision', 'InvalidTraffic');
    if (t.tag) {
      if (tags.has(t.tag)) throw new NonRetryableProviderError(`traffic tag "${t.tag}" used twice`, 'InvalidTraffic');
      tags.add(t.tag);
    }
    sum += p;
  }
  if (sum !== 100) throw new NonRetryableProviderError(`traffic percents sum to ${sum}, not 100`, 'InvalidTraffic');
}

/** The last segment of a resource name (`projects/.../revisions/orders-r2` → `orders-r2`). */
export const shortName = (full: string | null | undefined) => (full ?? '').slice((full ?? '').lastIndexOf('/') + 1);

/** Served percent per revision (LATEST resolved to the latest ready revision). */
export function servedSplit(svc: IService): Map<string, number> {
  const statuses = (svc.trafficStatuses ?? []).length ? svc.trafficStatuses! : (svc.traffic ?? []);
  const out = new Map<string, number>();
  for (const s of statuses) {
    const rev = s.type === TYPE_LATEST ? shortName(svc.latestReadyRevision) : (s.revision ?? '');
    if (!rev) continue;
    out.set(rev, (out.get(rev) ?? 0) + (s.percent ?? 0));
  }
  return out;
}

/** Order-insensitive identity of a traffic list (type, revision, percent, tag). */
export function trafficKey(targets: ITrafficTarget[]): string {
  return targets
    .map(
      (t) =>
        `${t.type === TYPE_LATEST ? 'LATEST' : 'REVISION'}|${t.type === TYPE_LATEST ? '' : (t.revision ?? '')}|${t.percent ?? 0}|${t.tag ?? ''}`,
    )
    .sort()
    .join(',');
}

/**
 * Deploy-time traffic: what the service serves now, pinned to explicit revisions (a LATEST target
 * would hand the new revision all traffic), plus the new revision at 0 % with the tag. The tag
 * moves off any other revision; other tags stay.
 */
export function deployTraffic(svc: IService, revision: string, tag: string): ITrafficTarget[] {
  const latest = shortName(svc.latestReadyRevision);
  const out: ITrafficTarget[] = [];
  for (const x of svc.traffic ?? []) {
    const rev = x.type === TYPE_LATEST ? latest : (x.revision ?? '');
    if (!rev) throw new NonRetryableProviderError(`service ${svc.name} routes to LATEST but has no ready revision`, 'NoReadyRevision');
    const keepTag = x.tag && x.tag !== tag ? x.tag : undefined;
    if ((x.percent ?? 0) === 0 && !keepTag) continue;
    if (rev === revision && (x.percent ?? 0) === 0) continue;
    out.push({ type: TYPE_REVISION, revision: rev, percent: x.percent ?? 0, ...(keepTag ? { tag: keepTag } : {}) });
  }
  const existing = out.find((x) => x.revision === revision && !x.tag);
  if (existing) existing.tag = tag;
  else out.push({ type: TYPE_REVISION, revision, percent: 0, tag });
  validateTraffic(out);
  return out;
}

/**
 * `desired` plus the tags of `current` that are neither rollgate's own (already in `desired`) nor
 * dropped: each kept tag goes on its revision's untagged target in `desired`, or on a 0 % target.
 */
export function withKeptTags(desired: ITrafficTarget[], current: ITrafficTarget[], drop: Set<string>): ITrafficTarget[] {
  const out = desired.map((x) => ({ ...x }));
  const taken = new Set(out.map((x) => x.tag).filter(Boolean));
  for (const x of current) {
    if (!x.tag || drop.has(x.tag) || taken.has(x.tag) || x.type === TYPE_LATEST || !x.revision) continue;
    const slot = out.find((y) => y.revision === x.revision && !y.tag);
    if (slot) slot.tag = x.tag;
    else out.push({ type: TYPE_REVISION, revision: x.revision, percent: 0, tag: x.tag });
    taken.add(x.tag);
  }
  return out;
}
