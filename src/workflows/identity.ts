/**
 * Verified identities in the workflow (docs/security-identities.md): who sent a message, checked by
 * the worker's verifier in a local activity (its input, the token, is not written to history; its
 * result, the identity, is), and the rules that compare identities: approvers with `group:NAME`
 * entries, four-eyes and `min_approvals` on verified subjects.
 */
import { ApplicationFailure, patched, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { IdentityCheck, IdentityCheckInput } from '../activities/identity';
import type { Identity } from '../contract';
import { failureMessage } from './saga';

/** Marks runs that check their starter's identity at the start (and so know whether their worker verifies). */
export const VERIFIED_IDENTITIES_PATCH = 'verified-identities';

const IDENTITY_CHECK_OPTIONS = {
  startToCloseTimeout: '20 seconds',
  // A JWKS that cannot be fetched is retried a few times; a refused token is not (non-retryable).
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumAttempts: 4 },
} as const;
const identity = proxyLocalActivities<Activities>(IDENTITY_CHECK_OPTIONS);
/** The same check as a regular activity: runs since patch `rollout-no-local-activities` (activity-options.ts, `checks`). */
const identityActivity = proxyActivities<Activities>(IDENTITY_CHECK_OPTIONS);

/**
 * The identity behind `input.token`; throws a `Refused` ApplicationFailure (an update's answer) with the reason.
 * `local`: the local activity of the runs recorded before patch `rollout-no-local-activities`
 * (their histories replay only that way); newer runs check in a regular activity.
 */
export async function checkIdentity(input: IdentityCheckInput, local = true): Promise<IdentityCheck> {
  try {
    return await (local ? identity : identityActivity).checkIdentity(input);
  } catch (err) {
    throw ApplicationFailure.nonRetryable(failureMessage(err), 'Refused');
  }
}

/** Whether this run checks its starter at the start (runs recorded before verified identities never do). */
export function checksStarter(): boolean {
  return patched(VERIFIED_IDENTITIES_PATCH);
}

export function unverified(name: string | undefined): Identity {
  return { name: name?.trim() || 'unknown', verified: false };
}

/** For history entries and alerts: the name, marked when nobody checked it. */
export function describeIdentity(i: Identity): string {
  return i.verified ? i.name : `${i.name} (unverified)`;
}

/** The same person: the same verified subject; when either side is unverified, the same name. */
export function sameIdentity(a: Identity, b: Identity): boolean {
  if (a.verified && b.verified && a.subject && b.subject) return a.subject === b.subject;
  return a.name === b.name;
}

/** `approvers` lists names and `group:NAME` entries; a group matches only a verified identity's groups. */
export function isApprover(approvers: string[], who: Identity): boolean {
  return approvers.some((a) => (a.startsWith('group:') ? who.verified && (who.groups ?? []).includes(a.slice(6)) : a === who.name));
}
