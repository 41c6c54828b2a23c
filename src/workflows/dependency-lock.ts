/**
 * A FIFO lock per shared dependency (a database, a queue). Rollouts queue with lockAcquire
 * (signal-with-start from an activity), get lockGranted as a signal, and release with lockRelease.
 * The workflow ends when idle, and continues-as-new long before history limits.
 *
 * Since patch `rollgate-lock-run-ids` a holder is a run (workflow id + run id): the grant goes to
 * that exact run, and a run that closed without releasing (terminated, failed, timed out...) is
 * dropped. Holder and waiters are checked every `checkEveryMs` (a local activity describes their
 * runs), when a new acquirer arrives and when a grant cannot be delivered. The first version's
 * path (holders by workflow id only, never checked) still runs for the histories it recorded;
 * entries without a run id are what its queue carries over.
 *
 * Since patch `rollgate-lock-nonces` an acquire may carry the rollout run's message nonce: the grant
 * echoes it (the rollout refuses a grant without it) and an entry queued with one is freed only by
 * a release that carries it. Anyone who can signal can name a holder and its run id (a signal-with-
 * start answers with the run id), not the nonce. Refused and malformed messages are recorded in
 * `refused` (lockState) and logged, never thrown: a throwing handler would fail the workflow task.
 * Since patch `rollgate-lock-verified-acquirers` an entry is granted only once the run it names has
 * answered that it asked for this lock (with this nonce): anyone can queue an entry naming any run.
 */
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { lockAcquireSignal, lockGrantedSignal, lockReleaseSignal, lockStateQuery, type LockHolder, type LockRefusal } from '../contract';

export interface DependencyLockInput {
  dependency: string;
  /** Waiting rollouts, the head first; a string is a workflow id queued by the first version. */
  queue?: (string | LockHolder)[];
  /** The head of `queue` was already granted (carried over continue-as-new): do not grant again. */
  headGranted?: boolean;
  /** How often holder and waiters are checked (default 5 s). */
  checkEveryMs?: number;
  /** The last refused messages (carried over continue-as-new). */
  refused?: LockRefusal[];
}

export const LOCK_RUN_IDS_PATCH = 'rollgate-lock-run-ids';
/** Marks lock executions that ask the named run before each grant (asked at the first grant). */
export const LOCK_VERIFIED_ACQUIRERS_PATCH = 'rollgate-lock-verified-acquirers';
/** Marks lock executions that keep acquirers' nonces (asked at the first acquire that carries one). */
export const LOCK_NONCES_PATCH = 'rollgate-lock-nonces';
/**
 * Marks lock executions that take the three decisions above at their start. Before it, the first
 * `verifiesAcquirers()` came right after the findClosedLockHolders local activity: when core
 * completed that workflow task early (a query answered while the activity ran), the activity's
 * marker landed in one task and the patch marker in the next, and a replay (an evicted lock, a
 * legacy query) resolved the activity before it knew of that patch: TMPRL1100 "patch marker
 * encountered ... but there is no corresponding change command" (docs/DEVELOPMENT.md, "Versioning").
 */
export const LOCK_PATCHES_AT_START = 'rollgate-lock-patches-at-start';
/**
 * Marks lock executions whose holder checks are regular activities (decided at the start, like the
 * patches above): a local activity's result can reach the code after it at another point of the
 * history on replay than in the first execution (docs/DEVELOPMENT.md, "Local activities and replay").
 */
export const LOCK_NO_LOCAL_ACTIVITIES_PATCH = 'rollgate-lock-no-local-activities';
const DEFAULT_CHECK_MS = 5000;
/** Refusals kept in the lock's state: enough to see a forgery, bounded against a flood of them. */
const MAX_REFUSALS = 20;

const CHECK_OPTIONS = {
  startToCloseTimeout: '20 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '5 seconds', maximumAttempts: 3 },
} as const;
const localChecks = proxyLocalActivities<Activities>(CHECK_OPTIONS);
const activityChecks = proxyActivities<Activities>(CHECK_OPTIONS);

export async function dependencyLockWorkflow(input: DependencyLockInput): Promise<void> {
  const dependency = input.dependency;
  const checkEveryMs = input.checkEveryMs ?? DEFAULT_CHECK_MS;
  const queue: LockHolder[] = (input.queue ?? []).map((e) => (typeof e === 'string' ? { holder: e } : entry(e)));
  let granted: LockHolder | undefined;
  /** The entry granted before continue-as-new: not granted again. */
  let carriedGrant: LockHolder | undefined = input.headGranted ? queue[0] : undefined;

  // Whether this execution runs the run-id version. Histories of the first version never reach a
  // patched() that answers true, so they replay on the first version's path; a running execution
  // of the first version switches at its next new workflow task that asks.
  let v2 = false;
  const upgrade = (): boolean => v2 || (v2 = patched(LOCK_RUN_IDS_PATCH));
  let checkSoon = false;
  // Entries with a nonce exist only once this has answered true, so every check of a nonce below
  // changes nothing for executions (and histories) from before the patch.
  let nonces = false;
  const keepsNonces = (): boolean => nonces || (nonces = patched(LOCK_NONCES_PATCH));
  const refused: LockRefusal[] = [...(input.refused ?? [])];
  let verified = false;
  const verifiesAcquirers = (): boolean => verified || (verified = patched(LOCK_VERIFIED_ACQUIRERS_PATCH));
  // Before any handler or local activity runs: a replay knows of every marker of the first task.
  if (patched(LOCK_PATCHES_AT_START)) {
    upgrade();
    keepsNonces();
    verifiesAcquirers();
  }
  const checks = patched(LOCK_NO_LOCAL_ACTIVITIES_PATCH) ? activityChecks : localChecks;
  function refuse(message: LockRefusal['message'], m: unknown, reason: string): void {
    const { holder, runId } = (typeof m === 'object' && m !== null ? m : {}) as Partial<LockHolder>;
    const r: LockRefusal = { atMs: Date.now(), message, reason };
    if (typeof holder === 'string') r.holder = holder.slice(0, 200);
    if (typeof runId === 'string') r.runId = runId.slice(0, 64);
    refused.push(r);
    if (refused.length > MAX_REFUSALS) refused.shift();
    log.warn(
      `lock on ${dependency} refused a ${message}${r.holder ? ` for ${r.holder}` : ''}${r.runId ? ` run ${r.runId}` : ''}: ${reason}`,
    );
  }

  setHandler(lockAcquireSignal, (m) => {
    if (!isLockHolder(m)) return refuse('lockAcquire', m, 'malformed message');
    const { holder, runId } = m;
    if (runId === undefined || !upgrade()) {
      if (!queue.some((e) => e.holder === holder && e.runId === undefined)) queue.push({ holder });
      return;
    }
    const nonce = m.nonce !== undefined && keepsNonces() ? m.nonce : undefined;
    if (!queue.some((e) => e.holder === holder && e.runId === runId && e.nonce === nonce))
      queue.push({ holder, runId, ...(nonce !== undefined ? { nonce } : {}) });
    // A new acquirer: a good moment to find out whether the holder (maybe this workflow id's
    // previous run) is still there. Two runs of one workflow id may both be queued until then.
    checkSoon = true;
  });
  setHandler(lockReleaseSignal, (m) => {
    if (!isLockHolder(m)) return refuse('lockRelease', m, 'malformed message');
    const { holder, runId } = m;
    if (runId === undefined || !upgrade()) {
      // First version: the first entry of that workflow id (never one queued with a nonce).
      const i = queue.findIndex((e) => e.holder === holder && e.nonce === undefined);
      if (i >= 0) {
        if (granted === queue[i]) granted = undefined;
        queue.splice(i, 1);
      } else if (queue.some((e) => e.holder === holder))
        refuse('lockRelease', m, 'no run id and nonce: that holder was queued with a nonce');
      return;
    }
    // This run, and an entry of its workflow id queued without a run id (by the first version).
    let withoutNonce = false;
    for (let i = queue.length - 1; i >= 0; i--) {
      const e = queue[i];
      if (e.holder !== holder || (e.runId !== undefined && e.runId !== runId)) continue;
      if (e.nonce !== undefined && e.nonce !== m.nonce) {
        withoutNonce = true;
        continue;
      }
      if (granted === e) granted = undefined;
      queue.splice(i, 1);
    }
    if (withoutNonce)
      refuse('lockRelease', m, `${m.nonce === undefined ? 'no nonce' : 'a wrong nonce'}: that run was queued with a nonce only it knows`);
  });
  setHandler(lockStateQuery, () => ({
    holder: granted?.holder,
    ...(granted?.runId ? { holderRunId: granted.runId } : {}),
    waiting: queue.filter((e) => e !== granted).map((e) => e.holder),
    queue: queue.filter((e) => e !== granted).map(publicEntry),
    ...(refused.length ? { refused: [...refused] } : {}),
  }));

  /**
   * Whether the head's run asked for this lock: 'no' drops the entry (recorded), 'unknown' (the
   * check went unanswered) waits and asks again. Nothing is granted unverified.
   */
  async function verifyHead(head: LockHolder): Promise<'yes' | 'no' | 'unknown'> {
    let answer: { requested: boolean; reason?: string };
    try {
      answer = await checks.verifyLockRequest({ dependency, ...head });
    } catch (err) {
      log.warn(`could not verify ${head.holder} for the lock on ${dependency}: ${(err as Error).message}`);
      return 'unknown';
    }
    if (answer.requested) return 'yes';
    const i = queue.indexOf(head);
    if (i >= 0) queue.splice(i, 1);
    refuse('lockAcquire', head, `not granted: ${answer.reason ?? 'the named run did not request this lock'}`);
    return 'no';
  }

  /** Drop the entries whose runs no longer run. An unanswered check keeps everything (asked again later). */
  async function dropClosed(): Promise<void> {
    checkSoon = false;
    if (queue.length === 0) return;
    let closed: (LockHolder & { status: string })[];
    try {
      closed = await checks.findClosedLockHolders({ holders: queue.map(publicEntry) });
    } catch (err) {
      log.warn(`could not check the holders of ${dependency}: ${(err as Error).message}`);
      return;
    }
    for (const c of closed) {
      const i = queue.findIndex((e) => e.holder === c.holder && e.runId === c.runId);
      if (i < 0) continue;
      log.warn(`dropping ${c.holder}${c.runId ? ` run ${c.runId}` : ''} from the lock on ${dependency}: the run is ${c.status}`);
      if (granted === queue[i]) granted = undefined;
      queue.splice(i, 1);
    }
  }

  function carried(): DependencyLockInput {
    return {
      dependency,
      // Entries without a run id as strings: the shape the first version reads.
      queue: queue.map((e) => (e.runId ? entry(e) : e.holder)),
      ...(granted && queue[0] === granted ? { headGranted: true } : {}),
      ...(input.checkEveryMs !== undefined ? { checkEveryMs: input.checkEveryMs } : {}),
      ...(refused.length ? { refused } : {}),
    };
  }

  for (let grants = 0; ;) {
    const busy = await condition(() => queue.length > 0, '10 minutes');
    if (!busy) {
      await condition(allHandlersFinished);
      if (queue.length === 0) return;
    }

    if (!upgrade()) {
      // The first version, unchanged in its commands: grant by workflow id, wait for the release.
      const head = queue[0];
      granted = head;
      try {
        await getExternalWorkflowHandle(head.holder).signal(lockGrantedSignal, { dependency });
      } catch {
        queue.shift(); // holder is gone: next
        granted = undefined;
        continue;
      }
      // A message of the new version (v2) switches a running execution over to the checked path.
      await condition(() => queue[0]?.holder !== head.holder || v2);
      granted = undefined;
      if (++grants >= 500 || workflowInfo().continueAsNewSuggested) {
        await condition(allHandlersFinished);
        await continueAsNew<typeof dependencyLockWorkflow>(carried());
      }
      continue;
    }

    // A grant to a closed run fails and moves on; a check asked for by a new acquirer runs first.
    if (checkSoon) await dropClosed();
    if (queue.length === 0) continue;
    const head = queue[0];
    if (head !== carriedGrant && verifiesAcquirers()) {
      const verdict = await verifyHead(head);
      if (verdict === 'no') continue;
      if (verdict === 'unknown') {
        await condition(() => queue[0] !== head, checkEveryMs);
        continue;
      }
      if (queue[0] !== head) continue; // released or dropped while it was asked
    }
    granted = head;
    if (head === carriedGrant) carriedGrant = undefined;
    else {
      try {
        await getExternalWorkflowHandle(head.holder, head.runId).signal(lockGrantedSignal, {
          dependency,
          ...(head.runId ? { runId: head.runId } : {}),
          ...(head.nonce ? { nonce: head.nonce } : {}),
        });
      } catch {
        // That run is closed or gone: next.
        const i = queue.indexOf(head);
        if (i >= 0) queue.splice(i, 1);
        if (granted === head) granted = undefined;
        continue;
      }
    }
    // Held until released, or until the holder's run is found closed.
    while (queue[0] === head) {
      await condition(() => queue[0] !== head || checkSoon, checkEveryMs);
      if (queue[0] !== head) break;
      await dropClosed();
      if (queue[0] === head && workflowInfo().continueAsNewSuggested) {
        await condition(allHandlersFinished);
        await continueAsNew<typeof dependencyLockWorkflow>(carried());
      }
    }
    if (granted === head) granted = undefined;
    if (++grants >= 500 || workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof dependencyLockWorkflow>(carried());
    }
  }
}

function entry(e: LockHolder): LockHolder {
  return { ...publicEntry(e), ...(e.nonce ? { nonce: e.nonce } : {}) };
}

/** An entry as queries and activities see it: the nonce stays inside the lock. */
function publicEntry(e: LockHolder): LockHolder {
  return e.runId ? { holder: e.holder, runId: e.runId } : { holder: e.holder };
}

/** Signals are not type-checked on the wire: anything may arrive. */
function isLockHolder(m: unknown): m is LockHolder {
  if (typeof m !== 'object' || m === null) return false;
  const { holder, runId, nonce } = m as Record<string, unknown>;
  return (
    typeof holder === 'string' && (runId === undefined || typeof runId === 'string') && (nonce === undefined || typeof nonce === 'string')
  );
}
