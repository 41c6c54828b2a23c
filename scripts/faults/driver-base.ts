/**
 * What the rollout driver (runner.ts) and the train driver (train-runner.ts) share: waiting for the
 * workflow's result in bounded slices, the trace and the violations of one schedule, operator
 * actions sent with a deadline, and timed events that must finish before the environment closes.
 */
import { ServiceError, type WorkflowHandle } from '@temporalio/client';
import type { Invariant, Violation } from './invariants';
import { withDeadline } from './deadline';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Read every 150 ms until `pred` holds of a reading (`ok`), `stop()` holds, or `ms` pass; `last`
 * is the last reading there was (a read that answered nothing keeps the one before).
 */
export async function pollUntil<T>(
  read: () => Promise<T | undefined>,
  pred: (t: T) => boolean,
  ms: number,
  stop: () => boolean = () => false,
): Promise<{ ok: boolean; last?: T }> {
  const deadline = Date.now() + ms;
  let last: T | undefined;
  while (Date.now() < deadline && !stop()) {
    last = (await read()) ?? last;
    if (last !== undefined && pred(last)) return { ok: true, last };
    await sleep(150);
  }
  return { ok: false, last };
}

/** An operator action is given the client's own retry budget (~20 s), so one sent during a dev-server restart still lands. */
const SEND_DEADLINE_MS = 25_000;

export abstract class DriverBase<R> {
  protected closed?: { ok: true; result: R } | { ok: false; error: Error };
  /** Set once `run()` has returned: no more calls of this driver. */
  protected done = false;
  protected readonly startMs = Date.now();
  /** Timed events not fired yet (operator actions after a delay). */
  protected timers = 0;
  /**
   * Bumped when the pipeline stops (paused after a rollback, rollback-failed): operator actions
   * scheduled before (a resume after an operator pause, a pending approval) no longer apply.
   */
  protected epoch = 0;
  private readonly reported = new Set<string>();
  /**
   * What runs beside the driver's loop and must end before the caller closes the environment and
   * the connection: actions sent in the background, and fired events that run to their end even
   * after a stop (a worker restart after a kill, a dev-server restart).
   */
  private readonly survivors = new Set<Promise<void>>();

  constructor(
    /** The workflow whose close ends the schedule. */
    protected readonly watched: WorkflowHandle,
    protected readonly out: { seed: number; trace: string[]; violations: Violation[] },
    private readonly log: ((line: string) => void) | undefined,
    private readonly label: string,
  ) {
    this.watchResult();
  }

  /** The loop: until the watched workflow closes, then the final checks. */
  protected abstract drive(): Promise<void>;

  /** Drive the schedule, then let what was fired finish before the caller closes the environment. */
  async run(): Promise<void> {
    try {
      await this.drive();
    } finally {
      this.done = true;
      await Promise.allSettled([...this.survivors]);
    }
  }

  /**
   * The result, waited for in bounded slices (so no wait outlives the driver). An error of the
   * server or the connection (a dev-server restart longer than the client's retries) is not the
   * workflow closing: wait again.
   */
  private watchResult(): void {
    withDeadline(this.watched, 30_000, () => this.watched.result()).then(
      (r) => (this.closed = { ok: true, result: r as R }),
      (e) => {
        if (e instanceof ServiceError && !this.done) return void sleep(500).then(() => this.watchResult());
        if (!this.done) this.closed = { ok: false, error: e as Error };
      },
    );
  }

  protected trace(s: string) {
    this.out.trace.push(`${((Date.now() - this.startMs) / 1000).toFixed(1)}s ${s}`);
    this.log?.(`[${this.label} ${this.out.seed}] ${s}`);
  }

  protected violate(invariant: Invariant, detail: string) {
    const key = `${invariant}|${detail}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.out.violations.push({ invariant, detail });
    this.trace(`VIOLATION ${invariant}: ${detail}`);
  }

  /** An operator action on `h`, traced; its failure is traced too (the schedule goes on). */
  protected async sendTo(h: WorkflowHandle, what: string, fn: () => Promise<unknown>): Promise<void> {
    await this.delivered(h, what, fn);
  }

  /** sendTo, and whether it landed. */
  protected async delivered(h: WorkflowHandle, what: string, fn: () => Promise<unknown>): Promise<boolean> {
    this.trace(what);
    try {
      await withDeadline(h, SEND_DEADLINE_MS, fn);
      return true;
    } catch (err) {
      this.trace(`  ${what}: ${(err as Error).message.split('\n')[0]}`);
      return false;
    }
  }

  /** Run `fn` after `ms` unless the pipeline stopped meanwhile or the schedule is over (`survivesStop`: always). */
  protected later(ms: number, fn: () => Promise<void>, opts: { survivesStop?: boolean } = {}) {
    this.timers++;
    const epoch = this.epoch;
    const fired = sleep(ms)
      .then(() => {
        if (opts.survivesStop) return fn();
        if (this.done) return; // the schedule is over: an operator action no longer applies
        if (epoch !== this.epoch) return this.trace('(dropped: the pipeline stopped meanwhile)');
        // Begun before the schedule ended: it runs to its end before the environment closes.
        const action = fn();
        this.background(action.catch(() => undefined));
        return action;
      })
      // Nothing awaits a fired event while it runs: a failure (a worker that cannot start) is traced, never left unhandled.
      .catch((err) => this.trace(`fired event failed: ${(err as Error).message.split('\n')[0]}`))
      .finally(() => {
        this.timers--;
        this.survivors.delete(fired);
      });
    if (opts.survivesStop) this.survivors.add(fired);
  }

  protected background(p: Promise<void>): void {
    const tracked = p.finally(() => this.survivors.delete(tracked));
    this.survivors.add(tracked);
  }
}
