/**
 * Fencing: no forward traffic write lands after a revert, by construction rather than by timing.
 *
 * Every traffic write of a rollout names its fence: the rollout (the first run id of its chain of
 * runs) and the pass (1, then one more for each `resume` that retries the release). A revert leaves
 * a mark on the target naming its fence (Cloud Run: a service annotation; Lambda: the alias
 * description). A forward write (deploy tag, canary split, wave step, promote) first reads the
 * target and is refused when the mark names the same rollout and the same or a later pass. Writes
 * are conditional on what was read (Cloud Run etag, Lambda RevisionId), so a revert between the
 * read and the write makes the write fail and its retry read the mark. An attempt the server has
 * already given up on (a zombie: partitioned worker, missed heartbeats) can therefore never put
 * traffic back on the new version once the saga reverted it; the next pass (after `resume`) can.
 */
import { NonRetryableProviderError, type TrafficFence } from './types';

const MARK = /\[rollgate-reverted:([^#\]]+)#(\d+)\]/;

/** The mark a revert leaves: `[rollgate-reverted:CHAIN#PASS]`. */
export function fenceMark(f: TrafficFence): string {
  return `[rollgate-reverted:${f.chain}#${f.pass}]`;
}

/** `text` with its mark (if any) replaced by the mark of `f`, within `max` characters. */
export function withFenceMark(text: string | undefined, f: TrafficFence, max = 256): string {
  const mark = fenceMark(f);
  const rest = (text ?? '').replace(MARK, '').trim();
  const room = max - mark.length - 1;
  return room <= 0 || !rest ? mark : `${rest.slice(0, room)} ${mark}`;
}

/** Does the mark in `text` fence off a forward write of `f`? */
export function fencedBy(text: string | undefined, f: TrafficFence | undefined): boolean {
  if (!f || !text) return false;
  const m = MARK.exec(text);
  return !!m && m[1] === f.chain && Number(m[2]) >= f.pass;
}

/** The refusal of a forward write that a revert fenced off (non-retryable: the pass is over). */
export class FencedWriteError extends NonRetryableProviderError {
  constructor(target: string, what: string, f: TrafficFence) {
    super(`${target}: ${what} refused: the target was reverted by pass ${f.pass} of this rollout (fenced)`, 'Fenced');
    this.name = 'FencedWriteError';
  }
}

/** Throw unless the forward write `what` of `f` may go ahead on a target carrying `mark`. */
export function checkFence(target: string, what: string, mark: string | undefined, f: TrafficFence | undefined): void {
  if (fencedBy(mark, f)) throw new FencedWriteError(target, what, f!);
}
