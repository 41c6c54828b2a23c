/**
 * Runs one fault schedule end to end: generate the spec and the schedule from the seed, seed the
 * emulators, arm the provider faults, start the rollout, fire the timed events, play the operator
 * (approvals, the decision after a rollback), then check the invariant in the emulators.
 */
import { randomBytes } from 'node:crypto';
import { ServiceError, type WorkflowHandle } from '@temporalio/client';
import { Status } from 'google-gax';
import { startRollout } from '../../src/client';
import { lambdaOp, type FaultAction, type RecordedCall } from '../../src/dev/fault-proxy';
import type { CloudRunFaultMethod, CloudRunFaultRule } from '../../src/dev/cloud-run-faults';
import type { LambdaTargetSpec, RolloutSpec, TargetSpec } from '../../src/spec/schema';
import {
  abortSignal,
  approveUpdate,
  externalVerdictSignal,
  messageNonceQuery,
  pauseSignal,
  rejectUpdate,
  resumeSignal,
  statusQuery,
  type RolloutResult,
  type RolloutStatus,
} from '../../src/contract';
import { Rng } from './prng';
import { generateSpec } from './spec-gen';
import {
  describeSchedule,
  generateSchedule,
  serverRestartEvent,
  type FaultSchedule,
  type ProviderFault,
  type TimedEvent,
} from './fault-gen';
import { FAULTS_WEBHOOK_ENV, ScheduleEnv, type Shared } from './env';
import { checkAlerts, checkOneVersion, checkPromoted, checkStable, describeTarget, type Invariant, type Violation } from './invariants';

export interface RunOptions {
  /** Worker in a child process, SIGKILLed at random moments (slower: one process per schedule). */
  kills: boolean;
  /** No progress for this long while running (not on a human decision) is a stall. */
  stallMs: number;
  /** Hard limit for one schedule. */
  timeoutMs: number;
  /** Wait this long after a stop before re-reading the emulators (late writes). */
  recheckMs: number;
  /** Restart the Temporal dev server once per schedule at a random moment (needs `shared.restartServer`). */
  restarts?: boolean;
  log?: (line: string) => void;
}

export const DEFAULT_RUN_OPTIONS: RunOptions = { kills: false, stallMs: 60_000, timeoutMs: 240_000, recheckMs: 2_000 };

export interface ScheduleResult {
  seed: number;
  service: string;
  shape: string;
  faults: string;
  /** The rollout's final state (or how the execution ended). */
  outcome: string;
  durationMs: number;
  violations: Violation[];
  /** What the operator/checker did, in order. */
  trace: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A client call of the checker, bounded by a gRPC deadline. Never race a call against a timer: the
 * call left behind keeps running (a query no worker answers waits on the server; across a dev-server
 * restart it retries for ~20 s), and when it fails after its connection was closed, the client's
 * retry timer throws "Channel has been shut down" where nothing can catch it. With a deadline the
 * call itself gives up, and the checker awaits it.
 */
export function withDeadline<T>(handle: WorkflowHandle, ms: number, fn: () => Promise<T>): Promise<T> {
  return handle.client.connection.withDeadline(Date.now() + ms, fn);
}

/** The rollout's status, or undefined when it does not answer within `ms` (the call has ended either way). */
export async function queryStatus(handle: WorkflowHandle, ms = 3_000): Promise<RolloutStatus | undefined> {
  try {
    return await withDeadline(handle, ms, () => handle.query(statusQuery));
  } catch {
    return undefined;
  }
}

/** An operator action is given the client's own retry budget (~20 s), so one sent during a dev-server restart still lands. */
const SEND_DEADLINE_MS = 25_000;

export async function runSchedule(seed: number, shared: Shared, opts: RunOptions = DEFAULT_RUN_OPTIONS): Promise<ScheduleResult> {
  const t0 = Date.now();
  const rng = new Rng(seed);
  // Names must be unique on the shared dev server and moto; the token does not touch the PRNG.
  const service = `fz${seed}-${randomBytes(2).toString('hex')}`;
  const env = new ScheduleEnv(shared, `faults-${service}`, opts.kills);
  const result: ScheduleResult = { seed, service, shape: '', faults: '', outcome: 'not started', durationMs: 0, violations: [], trace: [] };
  try {
    await env.start();
    const { spec, shape } = generateSpec(rng, { service, webhookEnv: FAULTS_WEBHOOK_ENV, workDir: env.workDir });
    const schedule = generateSchedule(rng, spec, { kills: opts.kills });
    // Half the schedules hand over to new runs (continue-as-new) every few analyses. A PRNG of its
    // own, so the spec and faults of a seed are what they were before this existed.
    const handover = new Rng(seed ^ 0x5ca1ab1e);
    const continueAsNewAfterEvents = handover.chance(0.5) ? handover.int(60, 160) : undefined;
    if (opts.restarts) {
      if (!shared.restartServer) throw new Error('--restarts needs a dev server this process started (not --temporal)');
      schedule.events.push(serverRestartEvent(new Rng(seed ^ 0x5e7e5)));
    }
    result.faults = describeSchedule(schedule) || 'no faults';
    result.shape = continueAsNewAfterEvents ? `${shape}, continue-as-new after ${continueAsNewAfterEvents} events` : shape;
    await env.seed(spec);
    armProviderFaults(env, spec, schedule.providerFaults);
    if (schedule.webhookFaults) env.webhook.failNext(schedule.webhookFaults.n, schedule.webhookFaults.status);
    env.startTraffic(spec);
    await env.startWorker();
    const handle = await startRollout(shared.client, spec, {
      startedBy: 'carol',
      taskQueue: env.taskQueue,
      runnerTaskQueue: env.runnerTaskQueue,
      continueAsNewAfterEvents,
    });
    await new Driver(env, spec, schedule, handle, opts, result).run();
  } catch (err) {
    result.violations.push({ invariant: 'harness', detail: `schedule could not run: ${(err as Error).stack ?? err}`.slice(0, 800) });
  } finally {
    await env.close().catch(() => undefined);
    result.durationMs = Date.now() - t0;
  }
  return result;
}

// ---- provider faults --------------------------------------------------------------------------

function lambdaAction(f: ProviderFault): FaultAction {
  switch (f.action) {
    case 'throttle':
      return { status: 429, errorType: 'TooManyRequestsException', message: 'Rate exceeded (injected)' };
    case 'server-error':
      return { status: 503, errorType: 'ServiceException', message: 'injected 503' };
    case 'slow':
      return { delayMs: f.delayMs ?? 1000 };
    case 'access-denied':
      return {
        status: 403,
        errorType: 'AccessDeniedException',
        message: 'User is not authorized to perform: lambda:UpdateAlias (injected)',
      };
  }
}

function cloudRunAction(f: ProviderFault): CloudRunFaultRule['action'] {
  switch (f.action) {
    case 'throttle':
      return { code: Status.RESOURCE_EXHAUSTED, message: 'quota exceeded (injected)' };
    case 'server-error':
      return { code: Status.UNAVAILABLE, message: 'service unavailable (injected)' };
    case 'slow':
      return { delayMs: f.delayMs ?? 1000 };
    case 'access-denied':
      return { code: Status.PERMISSION_DENIED, message: "Permission 'run.services.update' denied (injected)" };
  }
}

const LAMBDA_OPS: Record<ProviderFault['op'], (fn: string) => (c: RecordedCall) => boolean> = {
  traffic: (fn) => lambdaOp.updateAlias(fn),
  read: (fn) => (c) => c.method === 'GET' && c.path.includes(`/functions/${fn}/aliases/`),
  publish: (fn) => lambdaOp.publishVersion(fn),
  operation: (fn) => lambdaOp.updateCode(fn),
};
const CLOUD_RUN_OPS: Record<ProviderFault['op'], CloudRunFaultMethod> = {
  traffic: 'UpdateService',
  read: 'GetService',
  publish: 'UpdateService',
  operation: 'GetOperation',
};

/**
 * Arm faults that count calls per target and kind: the Nth matching call is the same step on every
 * run of a seed. Lambda calls are counted once per call (a call is matched against several rules).
 */
function armProviderFaults(env: ScheduleEnv, spec: RolloutSpec, faults: ProviderFault[]): void {
  const byName = new Map(spec.targets.map((t) => [t.name, t]));
  const counters = new Map<string, WeakMap<RecordedCall, number>>();
  const totals = new Map<string, number>();
  const indexOf = (key: string, c: RecordedCall) => {
    let seen = counters.get(key);
    if (!seen) counters.set(key, (seen = new WeakMap()));
    let i = seen.get(c);
    if (i === undefined) {
      i = (totals.get(key) ?? 0) + 1;
      totals.set(key, i);
      seen.set(c, i);
    }
    return i;
  };
  for (const f of faults) {
    const t = byName.get(f.target)!;
    if (t.provider === 'aws-lambda') {
      const op = LAMBDA_OPS[f.op](t.function);
      const key = `${t.function}|${f.op}`;
      env.proxy.inject({ match: (c) => op(c) && indexOf(key, c) > f.skip, times: f.times, action: lambdaAction(f) });
    } else {
      env.cloudRunFaults.inject({
        method: CLOUD_RUN_OPS[f.op],
        service: t.service,
        skip: f.skip,
        times: f.times,
        action: cloudRunAction(f),
      });
    }
  }
  // Every call is counted even when no rule of its kind is armed before it: count with a no-op rule.
  for (const t of spec.targets)
    if (t.provider === 'aws-lambda')
      for (const op of Object.keys(LAMBDA_OPS) as ProviderFault['op'][]) {
        const m = LAMBDA_OPS[op](t.function);
        const key = `${t.function}|${op}`;
        env.proxy.inject({ match: (c) => (m(c) && indexOf(key, c) > 0 && false) as boolean, times: 1, action: { delayMs: 0 } });
      }
}

/** From now on, every traffic write on `t` fails non-retryably (so its revert fails). */
function breakReverts(env: ScheduleEnv, t: TargetSpec): void {
  if (t.provider === 'aws-lambda')
    env.proxy.inject({
      match: lambdaOp.updateAlias((t as LambdaTargetSpec).function),
      times: 1000,
      action: lambdaAction({ action: 'access-denied' } as ProviderFault),
    });
  else
    env.cloudRunFaults.inject({
      method: 'UpdateService',
      service: t.service,
      times: 1000,
      action: cloudRunAction({ action: 'access-denied' } as ProviderFault),
    });
}

/** The rollout took an abort in rollback-failed: it has begun the last try of its failed reverts, then it closes. */
export function closingAfterFailedRevert(s: RolloutStatus): boolean {
  return s.history.some((e) => e.kind === 'stage' && e.text.startsWith('stage rollback: closing: a last try'));
}

// ---- the driver: events, operator, checks ----------------------------------------------------

type Closed = { ok: true; result: RolloutResult } | { ok: false; error: Error };

class Driver {
  private closed?: Closed;
  private readonly stageSeenAt = new Map<string, number>();
  private readonly pending: TimedEvent[];
  private timers = 0;
  private readonly approvalsDone = new Set<string>();
  private readonly brokenReverts: string[] = [];
  private resumedAfterRollback = false;
  private endRequested = false;
  private endRequestedAt = 0;
  private mustTerminate = false;
  private lastStatus?: RolloutStatus;
  private lastSig = '';
  private lastProgressMs = Date.now();
  private readonly startMs = Date.now();
  private readonly reported = new Set<string>();

  constructor(
    private readonly env: ScheduleEnv,
    private readonly spec: RolloutSpec,
    private readonly schedule: FaultSchedule,
    private readonly handle: WorkflowHandle,
    private readonly opts: RunOptions,
    private readonly result: ScheduleResult,
  ) {
    this.pending = [...schedule.events];
    this.watchResult();
  }

  /** Set once `run()` has returned: no more calls of this driver. */
  private done = false;

  /**
   * The rollout's result, waited for in bounded slices (so no wait outlives the driver). An error
   * of the server or the connection (a dev-server restart longer than the client's retries) is not
   * the workflow closing: wait again.
   */
  private watchResult(): void {
    withDeadline(this.handle, 30_000, () => this.handle.result()).then(
      (r) => (this.closed = { ok: true, result: r as RolloutResult }),
      (e) => {
        if (e instanceof ServiceError && !this.done) return void sleep(500).then(() => this.watchResult());
        if (!this.done) this.closed = { ok: false, error: e as Error };
      },
    );
  }

  private trace(s: string) {
    this.result.trace.push(`${((Date.now() - this.startMs) / 1000).toFixed(1)}s ${s}`);
    this.opts.log?.(`[seed ${this.result.seed}] ${s}`);
  }

  private violate(invariant: Invariant, detail: string) {
    const key = `${invariant}|${detail}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.result.violations.push({ invariant, detail });
    this.trace(`VIOLATION ${invariant}: ${detail}`);
  }

  private async status(): Promise<RolloutStatus | undefined> {
    const s = await queryStatus(this.handle);
    if (s) this.lastStatus = s;
    return s;
  }

  private async send(what: string, fn: () => Promise<unknown>): Promise<void> {
    this.trace(what);
    try {
      await withDeadline(this.handle, SEND_DEADLINE_MS, fn);
    } catch (err) {
      this.trace(`  ${what}: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  /**
   * A resume meant for an operator pause. A rollout paused after a rollback takes `resume` as "retry
   * the release", so this one is sent only while the status shows no rollback pause (the checker
   * notices a stop up to a poll later than the workflow announces it).
   */
  private async resumeOperatorPause(what: string): Promise<void> {
    const s = await this.status();
    if (!s || s.pausedAfterRollback || s.state === 'rollback-failed')
      return this.trace(`(${what} not sent: the pipeline stopped meanwhile)`);
    await this.send(what, () => this.handle.signal(resumeSignal, { by: 'alice' }));
  }

  /**
   * Bumped when the pipeline stops (paused after a rollback, rollback-failed): operator actions
   * scheduled before (a resume after an operator pause, a pending approval) no longer apply.
   */
  private epoch = 0;
  private later(ms: number, fn: () => Promise<void>, opts: { survivesStop?: boolean } = {}) {
    this.timers++;
    const epoch = this.epoch;
    const fired = sleep(ms)
      .then(() => {
        if (opts.survivesStop) return fn();
        if (this.done) return; // the schedule is over: an operator action no longer applies
        return epoch === this.epoch ? fn() : this.trace('(dropped: the pipeline stopped meanwhile)');
      })
      // Nothing awaits a fired event while it runs: a failure (a worker that cannot start) is traced, never left unhandled.
      .catch((err) => this.trace(`fired event failed: ${(err as Error).message.split('\n')[0]}`))
      .finally(() => {
        this.timers--;
        this.survivors.delete(fired);
      });
    if (opts.survivesStop) this.survivors.add(fired);
  }
  /**
   * What runs beside the driver's loop and must end before the caller closes the environment and
   * the connection: actions sent in the background, and fired events that run to their end even
   * after a stop (a worker restart after a kill, a dev-server restart).
   */
  private readonly survivors = new Set<Promise<void>>();
  private background(p: Promise<void>): void {
    const tracked = p.finally(() => this.survivors.delete(tracked));
    this.survivors.add(tracked);
  }

  /** Drive the schedule, then let what was fired finish before the caller closes the environment. */
  async run(): Promise<void> {
    try {
      await this.drive();
    } finally {
      this.done = true;
      await Promise.allSettled([...this.survivors]);
    }
  }

  private async drive(): Promise<void> {
    while (!this.closed) {
      if (Date.now() - this.startMs > this.opts.timeoutMs) {
        this.violate(
          'stall',
          `still open after ${this.opts.timeoutMs / 1000} s (state ${this.lastStatus?.state}, stage ${this.lastStatus?.stage}: ${this.lastStatus?.detail})`,
        );
        return this.forceClose();
      }
      const s = await this.status();
      this.env.sampleWrites();
      if (s && !this.closed) {
        this.noteStages(s);
        if (this.detectStall(s)) return this.forceClose();
        await this.operator(s);
        if (this.mustTerminate) return this.forceClose();
        if (this.endRequested && !this.endRequestedAt) this.endRequestedAt = Date.now();
        if (this.endRequestedAt && Date.now() - this.endRequestedAt > 30_000 && !this.closed) {
          this.violate('operator', `abort did not close the rollout within 30 s (state ${s.state}, stage ${s.stage}: ${s.detail})`);
          return this.forceClose();
        }
      }
      this.fireDue();
      if (!this.closed) await sleep(150);
    }
    await this.finalChecks();
  }

  private noteStages(s: RolloutStatus) {
    const now = Date.now();
    for (const e of s.history) {
      const m = e.kind === 'stage' ? /^stage (\S+?): /.exec(e.text) : null;
      if (m && !this.stageSeenAt.has(m[1])) this.stageSeenAt.set(m[1], now);
    }
    if (!this.stageSeenAt.has(s.stage)) this.stageSeenAt.set(s.stage, now);
  }

  /** (5): running, not on an announced human decision, and nothing changes for stallMs. */
  private detectStall(s: RolloutStatus): boolean {
    const sig = JSON.stringify([s.state, s.stage, s.detail, s.awaitingApproval, s.history.length, s.targets.map((t) => t.weight)]);
    const now = Date.now();
    if (sig !== this.lastSig) {
      this.lastSig = sig;
      this.lastProgressMs = now;
      return false;
    }
    const waitingOnHuman = s.state !== 'running' || !!s.awaitingApproval;
    if (!waitingOnHuman && now - this.lastProgressMs > this.opts.stallMs) {
      this.violate(
        'stall',
        `no progress for ${Math.round((now - this.lastProgressMs) / 1000)} s while running, stage ${s.stage}: ${s.detail}`,
      );
      return true;
    }
    return false;
  }

  private fireDue() {
    const now = Date.now();
    for (let i = 0; i < this.pending.length;) {
      const e = this.pending[i];
      const t = e.trigger;
      const due =
        'atMs' in t ? now - this.startMs >= t.atMs : this.stageSeenAt.has(t.stage) && now - this.stageSeenAt.get(t.stage)! >= t.delayMs;
      if (!due) {
        i++;
        continue;
      }
      this.pending.splice(i, 1);
      this.fire(e);
    }
  }

  private fire(e: TimedEvent) {
    const a = e.action;
    const h = this.handle;
    switch (a.kind) {
      case 'pause':
        this.background(this.send('pause', () => h.signal(pauseSignal, { by: 'alice', reason: 'fault schedule' })));
        if (a.resumeAfterMs !== undefined) this.later(a.resumeAfterMs, () => this.resumeOperatorPause('resume (after pause)'));
        if (a.abortAfterMs !== undefined)
          this.later(a.abortAfterMs, () =>
            this.send('abort (after pause)', () => h.signal(abortSignal, { by: 'alice', reason: 'fault schedule' })),
          );
        return;
      case 'resume':
        this.background(this.resumeOperatorPause('resume'));
        return;
      case 'abort':
        this.background(this.send('abort', () => h.signal(abortSignal, { by: 'alice', reason: 'fault schedule' })));
        return;
      case 'verdict':
        // As rollgate's scheduled analysis sends it: with the run's message nonce (a forged one is
        // refused). Without an answer (a dev-server restart) it goes without one, which the run refuses.
        this.background(
          this.send('external verdict fail', async () => {
            const nonce = await h.query(messageNonceQuery).catch(() => undefined);
            return h.signal(externalVerdictSignal, {
              verdict: 'fail',
              reason: 'external check: error budget burnt (fault schedule)',
              atMs: Date.now(),
              ...(nonce ? { nonce } : {}),
            });
          }),
        );
        return;
      case 'breach':
        this.trace(`breach: new version of ${a.targets.join(', ')} fails 30 % of requests`);
        for (const t of a.targets) this.env.breaching.add(t);
        return;
      case 'slow-operations':
        this.trace(`slow Cloud Run operations: ${a.polls} polls`);
        this.env.cloudRun.knobs.operationPolls = a.polls;
        return;
      case 'break-reverts': {
        const t = this.spec.targets.find((x) => x.name === a.target)!;
        this.trace(`break every traffic write (so every revert) of ${t.name}`);
        this.brokenReverts.push(t.name);
        breakReverts(this.env, t);
        return;
      }
      case 'server-restart':
        this.later(
          0,
          async () => {
            this.trace(`dev server restarting (down for ${a.downMs} ms)`);
            await this.env.shared.restartServer!(a.downMs);
            this.trace('dev server restarted on the same SQLite file');
          },
          { survivesStop: true },
        );
        return;
      case 'kill':
        this.later(
          0,
          async () => {
            if (!(await this.env.killWorker())) return;
            this.trace(`worker SIGKILLed, restart in ${a.restartAfterMs} ms`);
            await sleep(a.restartAfterMs);
            if (this.done) return this.trace('(worker not restarted: the schedule is over)');
            await this.env.startWorker();
            this.trace('worker restarted');
          },
          { survivesStop: true },
        );
        return;
    }
  }

  /** The operator: approvals, the decision after a rollback, fixing a failed rollback, and the end. */
  private async operator(s: RolloutStatus): Promise<void> {
    const h = this.handle;
    if (s.awaitingApproval && !this.approvalsDone.has(s.awaitingApproval)) {
      const wave = s.awaitingApproval;
      this.approvalsDone.add(wave);
      const policy = this.schedule.approvals[wave] ?? { decision: 'approve', afterMs: 0 };
      if (policy.decision === 'approve')
        this.later(policy.afterMs, () => this.send(`approve ${wave}`, () => h.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] })));
      else if (policy.decision === 'reject')
        this.later(policy.afterMs, () =>
          this.send(`reject ${wave}`, () => h.executeUpdate(rejectUpdate, { args: [{ by: 'bob', reason: 'fault schedule says no' }] })),
        );
      else this.trace(`leave ${wave} waiting for approval`);
      return;
    }
    // An abort sent before a revert failed is not the answer to the escalation (README): handle it.
    const escalated = s.state === 'rollback-failed' && !closingAfterFailedRevert(s);
    if (this.endRequested && !escalated) return;
    // The saga has finished (an operator pause during the saga also shows "paused" at stage rollback).
    const afterRollback = s.state === 'paused' && s.stage === 'rollback' && s.detail.startsWith('pipeline paused after');
    if (afterRollback) return this.pausedAfterRollback();
    if (escalated) return this.rollbackFailed();
    // A human decision nobody will take (operator pause without resume, approval left): close it.
    const humanWait = (s.state === 'paused' || !!s.awaitingApproval) && this.timers === 0;
    if (humanWait && !this.pending.some((e) => 'atMs' in e.trigger)) {
      this.endRequested = true;
      this.pending.length = 0;
      await this.send(`abort (${s.awaitingApproval ? `left awaiting approval of ${s.awaitingApproval}` : 'left paused'})`, () =>
        h.signal(abortSignal, { by: 'checker', reason: 'end of fault schedule' }),
      );
    }
  }

  private alertsSeen = 0;
  private checkerAbortedRollbackFailed = false;
  /**
   * An operator reacts to the alert: wait until the rollout records one more alert (delivered or
   * not) than when we last acted. A missing alert is checked at the end (invariant 4).
   */
  private async waitForAlert(): Promise<void> {
    const records = (s?: RolloutStatus) =>
      (s?.history ?? []).filter((e) => e.kind === 'alert' && /^\S+ alert (delivered|NOT delivered)/.test(e.text)).length;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !this.closed) {
      const n = records(await this.status());
      if (n > this.alertsSeen) {
        this.alertsSeen = n;
        return;
      }
      await sleep(150);
    }
    this.trace('no alert recorded within 20 s');
  }

  /** Paused after a rollback: every target on stable, and it stays so; then resume once or close. */
  private async pausedAfterRollback(): Promise<void> {
    this.epoch++;
    this.trace(`paused after rollback: ${this.lastStatus?.rollbackReason ?? ''}`);
    await this.waitForAlert();
    const now = await this.status();
    if (now?.state === 'rollback-failed') return this.rollbackFailed();
    await this.checkStableTwice('paused after rollback');
    if (this.schedule.afterRollback.resumeOnce && !this.resumedAfterRollback) {
      this.resumedAfterRollback = true;
      if (this.schedule.afterRollback.clearBreach) {
        this.env.breaching.clear();
        this.env.clearFaults();
        this.trace('breach and faults cleared');
      }
      await this.send('resume (retry the release)', () => this.handle.signal(resumeSignal, { by: 'alice' }));
      await this.waitLeave((s) => !(s.state === 'paused' && s.stage === 'rollback'), 15_000);
      return;
    }
    this.endRequested = true;
    this.pending.length = 0;
    await this.send('abort (close the paused pipeline)', () =>
      this.handle.signal(abortSignal, { by: 'alice', reason: 'end of fault schedule' }),
    );
  }

  /** Rollback-failed: fix the target (faults cleared), then abort (must close) or resume (must retry the reverts). */
  private async rollbackFailed(): Promise<void> {
    this.epoch++;
    this.endRequested = false; // an earlier abort does not answer the escalation: answer it now
    this.endRequestedAt = 0;
    this.trace(`rollback-failed: ${this.lastStatus?.detail.slice(0, 200) ?? ''}`);
    await this.waitForAlert();
    this.pending.length = 0;
    this.env.clearFaults();
    this.env.breaching.clear();
    this.trace('targets fixed (faults cleared)');
    if (this.schedule.afterRollbackFailed === 'abort') {
      this.checkerAbortedRollbackFailed = true;
      await this.send('abort (in rollback-failed)', () => this.handle.signal(abortSignal, { by: 'alice', reason: 'fixed by hand' }));
      // Taken when the rollout records the last try of its reverts (its state stays rollback-failed
      // until that try and the alert are done: 19 s on a loaded machine, seed 1003); it must still close.
      const taken = await this.waitLeave((s) => s.state !== 'rollback-failed' || closingAfterFailedRevert(s), 10_000);
      if (taken || this.closed) {
        this.endRequested = true;
        return;
      }
      this.violate('operator', 'abort in state rollback-failed was ignored: the rollout stayed open in rollback-failed');
    }
    await this.send('resume (retry the failed reverts)', () => this.handle.signal(resumeSignal, { by: 'alice' }));
    const left = await this.waitLeave((s) => s.state !== 'rollback-failed', 30_000);
    if (!left && !this.closed) {
      this.violate('operator', 'resume in state rollback-failed did not retry the reverts (still rollback-failed after 30 s)');
      this.mustTerminate = true;
    }
  }

  /** Poll until `pred` holds or the workflow closes; false on timeout. */
  private async waitLeave(pred: (s: RolloutStatus) => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && !this.closed) {
      const s = await this.status();
      this.env.sampleWrites();
      if (s && pred(s)) return true;
      await sleep(150);
    }
    return !!this.closed;
  }

  /** Until the workflow has no pending activity (a retry in flight could still write), then no write for a second. */
  private async quiesce(maxMs = 60_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    while (Date.now() < deadline) {
      let pending = 0;
      if (!this.closed) {
        try {
          const d = await withDeadline(this.handle, 5_000, () => this.handle.describe());
          pending = d.raw.pendingActivities?.length ?? 0;
          if (d.status.name !== 'RUNNING') pending = 0;
        } catch {
          pending = 0;
        }
      }
      this.env.sampleWrites();
      if (pending === 0 && Date.now() - this.env.lastWriteMs() > 1_000) return;
      await sleep(250);
    }
    this.trace(`activities still pending after ${maxMs / 1000} s`);
  }

  /** (1) now, then (1) again after the in-flight work settled: a failure only the second time is a late write. */
  private async checkStableTwice(phase: string): Promise<void> {
    const first = await checkStable(this.env, this.spec);
    for (const p of first) this.violate('stable', `${phase}: ${p}`);
    await sleep(this.opts.recheckMs);
    await this.quiesce();
    const second = await checkStable(this.env, this.spec);
    for (const p of second) {
      const target = p.split(':')[0];
      if (first.some((f) => f.split(':')[0] === target)) continue;
      this.violate('late-write', `${phase}: a write landed after the revert: ${p}`);
    }
  }

  private async forceClose(): Promise<void> {
    this.result.outcome = `stalled (terminated by the checker in state ${this.lastStatus?.state}, stage ${this.lastStatus?.stage})`;
    try {
      await withDeadline(this.handle, 10_000, () => this.handle.terminate('fault schedule checker: stalled'));
    } catch {
      // already closed
    }
    await this.env.stopWorker();
  }

  private async finalChecks(): Promise<void> {
    const c = this.closed!;
    let finalState: string;
    if (c.ok) finalState = c.result.state;
    else {
      finalState = 'execution-failed';
      this.violate(
        'workflow-failed',
        `the rollout execution ended without a result: ${c.error.message.split('\n')[0]}${c.error.cause ? `: ${(c.error.cause as Error).message}` : ''}`,
      );
    }
    this.result.outcome = finalState;
    if (this.schedule.calm && finalState !== 'succeeded')
      this.trace(`note: a calm schedule (no stop planned) ended ${finalState}: ${c.ok ? (c.result.reason ?? '') : ''}`);
    this.trace(`closed: ${finalState}${c.ok && c.result.reason ? ` (${c.result.reason.slice(0, 160)})` : ''}`);
    const handovers = c.ok ? c.result.status.history.filter((e) => e.text.startsWith('continuing as new')).length : 0;
    if (handovers) this.trace(`continued as new ${handovers} time(s)`);
    const stopped = ['rolled-back', 'aborted', 'failed', 'rollback-failed', 'execution-failed'].includes(finalState);
    const phase = `closed ${finalState}${
      finalState !== 'rollback-failed'
        ? ''
        : this.checkerAbortedRollbackFailed
          ? ' (the checker fixed the target, then sent abort)'
          : ' (closed without waiting for the operator: the failed revert was never retried)'
    }`;
    const first = stopped
      ? await checkStable(this.env, this.spec)
      : finalState === 'succeeded'
        ? await checkPromoted(this.env, this.spec)
        : [];
    for (const p of first) this.violate(stopped ? 'stable' : 'promoted', `${phase}: ${p}`);
    // Drain: in-flight activities finish (a graceful worker stop waits for them), then re-read.
    await sleep(this.opts.recheckMs);
    await this.env.stopWorker();
    await this.quiesce(10_000);
    const second = stopped
      ? await checkStable(this.env, this.spec)
      : finalState === 'succeeded'
        ? await checkPromoted(this.env, this.spec)
        : [];
    for (const p of second) {
      const target = p.split(':')[0];
      if (first.some((f) => f.split(':')[0] === target)) continue;
      this.violate(stopped ? 'late-write' : 'promoted', `${phase}: a write landed after the workflow closed: ${p}`);
    }
    for (const p of await checkOneVersion(this.env, this.spec)) this.violate('one-version', p);
    if (c.ok) {
      // Alerts are sent right after the state changes: give a late one a moment.
      await sleep(500);
      for (const p of checkAlerts(this.env, c.result.status.history, { finalState, brokenReverts: this.brokenReverts }))
        this.violate('alerts', p);
    }
    if (this.result.violations.some((v) => v.invariant === 'stable' || v.invariant === 'late-write' || v.invariant === 'promoted'))
      for (const t of this.spec.targets) this.trace(`  ${t.name}: ${await describeTarget(this.env, t)}`);
  }
}
