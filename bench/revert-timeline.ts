/**
 * Where the time of one breach -> reverted goes (issue 12 item 1, "Temporal's share of a revert").
 *
 * Three clocks, all on this machine (so comparable to the millisecond): the workflow history's
 * server event times, the worker's own provider calls (timed in the worker by `timedProviders`),
 * and the moment each emulator took the revert (`RevertLandings`: moto's answer to the UpdateAlias
 * seen by the fault proxy, the Cloud Run fake's served split read in process). Landing times are
 * only times: `RevertLandings.confirm` reads every target's final state from the emulators themselves.
 */
import { temporal } from '@temporalio/proto';
import { eventMs, scheduledInput, type HistoryEvent } from './history-events';
import { aliasOf } from './support';
import type { CloudRunFake } from '../src/dev/cloud-run-fake';
import { lambdaOp, type CallObserver, type FaultProxy } from '../src/dev/fault-proxy';
import type { TargetProvider } from '../src/providers/types';
import type { CloudRunTargetSpec, LambdaTargetSpec, TargetSpec } from '../src/spec/schema';

/** One provider call made by the worker's activities (wall clock, ms). */
export interface ProviderCall {
  target: string;
  startMs: number;
  endMs: number;
}

/** The worker's providers, with every routeAll timed into `calls` (the bench reads them afterwards). */
export function timedProviders<P extends Record<string, TargetProvider<any>>>(providers: P, calls: ProviderCall[]): P {
  const out: Record<string, TargetProvider<any>> = {};
  for (const [kind, p] of Object.entries(providers))
    out[kind] = new Proxy(p, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'routeAll' || typeof value !== 'function') return value;
        return async (t: TargetSpec, ...rest: unknown[]) => {
          const startMs = Date.now();
          try {
            return await (value as (...a: unknown[]) => Promise<unknown>).call(target, t, ...rest);
          } finally {
            calls.push({ target: t.name, startMs, endMs: Date.now() });
          }
        };
      },
    });
  return out as P;
}

/** What the in-process worker did, timed in the worker's main thread (`WorkerClock`). */
type WorkerMarkKind =
  | 'activation-polled'
  | 'activate-start'
  | 'activate-end'
  | 'sinks-start'
  | 'sinks-end'
  | 'complete-sent'
  | 'complete-back'
  | 'activity-polled';

/**
 * The worker's side of a workflow task and of the activity hand-over, which the history cannot
 * show: when core handed an activation to the SDK's JavaScript, how long the workflow thread took
 * (and the round trip that collects its sink calls), the completion call into core (which holds
 * the RespondWorkflowTaskCompleted RPC and its eager activity starts), and when each activity task
 * reached JavaScript (the SDK polls core for them one at a time). Bench only: it wraps private
 * methods of the SDK's Worker (1.24); if their shape changes it attaches nothing and the rows are
 * left out.
 */
export class WorkerClock {
  readonly marks: { kind: WorkerMarkKind; atMs: number }[] = [];

  attach(worker: unknown): boolean {
    const w = worker as { nativeWorker?: Record<string, unknown>; handleActivation?: unknown };
    const native = w.nativeWorker;
    const names = ['pollWorkflowActivation', 'completeWorkflowActivation', 'pollActivityTask'] as const;
    if (!native || typeof w.handleActivation !== 'function' || names.some((n) => typeof native[n] !== 'function')) return false;
    const mark = (kind: WorkerMarkKind) => this.marks.push({ kind, atMs: Date.now() });
    const wrap =
      <A extends unknown[], R>(f: (...a: A) => Promise<R>, before: WorkerMarkKind | undefined, after: WorkerMarkKind) =>
      async (...a: A): Promise<R> => {
        if (before) mark(before);
        const r = await f(...a);
        mark(after);
        return r;
      };
    type Fn = (...a: unknown[]) => Promise<unknown>;
    native.pollWorkflowActivation = wrap(native.pollWorkflowActivation as Fn, undefined, 'activation-polled');
    native.completeWorkflowActivation = wrap(native.completeWorkflowActivation as Fn, 'complete-sent', 'complete-back');
    native.pollActivityTask = wrap(native.pollActivityTask as Fn, undefined, 'activity-polled');
    const handle = (w.handleActivation as Fn).bind(worker);
    const wrapped = new WeakSet<object>();
    w.handleActivation = async (state: unknown, ...rest: unknown[]) => {
      const wf = (state as { workflow?: Record<string, unknown> } | undefined)?.workflow;
      if (wf && !wrapped.has(wf) && typeof wf.activate === 'function' && typeof wf.getAndResetSinkCalls === 'function') {
        wrapped.add(wf);
        wf.activate = wrap((wf.activate as Fn).bind(wf), 'activate-start', 'activate-end');
        wf.getAndResetSinkCalls = wrap((wf.getAndResetSinkCalls as Fn).bind(wf), 'sinks-start', 'sinks-end');
      }
      return handle(state, ...rest);
    };
    return true;
  }

  /** The first mark of `kind` at or after `fromMs`. */
  first(kind: WorkerMarkKind, fromMs: number): number {
    return this.marks.find((m) => m.kind === kind && m.atMs >= fromMs)?.atMs ?? NaN;
  }

  /** The `n`th mark of `kind` at or after `fromMs` (1-based). */
  nth(kind: WorkerMarkKind, fromMs: number, n: number): number {
    return this.marks.filter((m) => m.kind === kind && m.atMs >= fromMs)[n - 1]?.atMs ?? NaN;
  }
}

const onStable = (split: Record<string, number>, stable: string | undefined) => {
  const keys = Object.keys(split);
  return keys.length === 1 && keys[0] === stable && split[keys[0]] === 100;
};

/**
 * When each target took its revert, as the emulators saw it: a Lambda alias write to `stable` with
 * no weights answered 200 by moto (through the fault proxy: no polling load on moto), a Cloud Run
 * service whose served split is 100 % on `stable` (the fake lives in this process: a read is a
 * function call). Also counts the round trips each emulator served meanwhile.
 */
export class RevertLandings {
  readonly landedMs = new Map<string, number>();
  private readonly startCalls: number;
  private readonly startRun: Record<string, number>;
  private readonly observer: CallObserver;
  private polling = true;
  private readonly poll: Promise<void>;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly cloudRun: CloudRunFake,
    private readonly lambdas: LambdaTargetSpec[],
    private readonly runs: CloudRunTargetSpec[],
    private readonly stable: Map<string, string>,
  ) {
    this.startCalls = proxy.calls.length;
    this.startRun = { ...cloudRun.calls };
    const byFunction = new Map(lambdas.map((t) => [t.function, t]));
    this.observer = (call, body, status) => {
      if (!lambdaOp.updateAlias()(call) || status >= 300) return;
      const fn = /\/functions\/([^/]+)\/aliases\//.exec(call.path.split('?')[0])?.[1];
      const t = fn ? byFunction.get(fn) : undefined;
      if (!t || this.landedMs.has(t.name)) return;
      const b = JSON.parse(body.toString('utf8') || '{}') as {
        FunctionVersion?: string;
        RoutingConfig?: { AdditionalVersionWeights?: Record<string, number> };
      };
      const weights = b.RoutingConfig?.AdditionalVersionWeights ?? {};
      if (b.FunctionVersion === stable.get(t.name) && Object.keys(weights).length === 0) this.landedMs.set(t.name, Date.now());
    };
    proxy.observers.push(this.observer);
    this.poll = this.pollCloudRun();
  }

  private async pollCloudRun(): Promise<void> {
    while (this.polling && this.runs.some((t) => !this.landedMs.has(t.name))) {
      for (const t of this.runs)
        if (!this.landedMs.has(t.name) && onStable(this.cloudRun.servedSplit(t.project, t.region, t.service), this.stable.get(t.name)))
          this.landedMs.set(t.name, Date.now());
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Until every target landed (or `timeoutMs`); the latest landing (ms, wall clock). */
  async all(timeoutMs = 120_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    const names = [...this.lambdas, ...this.runs].map((t) => t.name);
    while (names.some((n) => !this.landedMs.has(n))) {
      if (Date.now() > deadline)
        throw new Error(`not reverted after ${timeoutMs} ms: ${names.filter((n) => !this.landedMs.has(n)).join(', ')}`);
      await new Promise((r) => setTimeout(r, 2));
    }
    return Math.max(...names.map((n) => this.landedMs.get(n)!));
  }

  /** Round trips to moto (by operation) and to the fake (by method) since this was created. */
  roundTrips(): { moto: Record<string, number>; cloudRun: Record<string, number> } {
    const moto: Record<string, number> = {};
    for (const c of this.proxy.calls.slice(this.startCalls)) {
      const op = lambdaOp.updateAlias()(c)
        ? 'UpdateAlias'
        : c.method === 'GET' && /\/aliases\//.test(c.path)
          ? 'GetAlias'
          : `${c.method} other`;
      moto[op] = (moto[op] ?? 0) + 1;
    }
    const cloudRun: Record<string, number> = {};
    for (const [k, n] of Object.entries(this.cloudRun.calls))
      if (n - (this.startRun[k] ?? 0) > 0) cloudRun[k] = n - (this.startRun[k] ?? 0);
    return { moto, cloudRun };
  }

  /** Stops watching; then every target must be 100 % on its stable version, read from moto and the fake (the ground truth). */
  async confirm(motoUrl: string): Promise<void> {
    this.polling = false;
    await this.poll;
    const i = this.proxy.observers.indexOf(this.observer);
    if (i >= 0) this.proxy.observers.splice(i, 1);
    for (const t of this.lambdas) {
      const a = await aliasOf(motoUrl, t);
      if (a.version !== this.stable.get(t.name) || Object.keys(a.weights).length)
        throw new Error(`${t.name}: alias serves ${a.version} ${JSON.stringify(a.weights)}, not ${this.stable.get(t.name)}`);
    }
    for (const t of this.runs) {
      const split = this.cloudRun.servedSplit(t.project, t.region, t.service);
      if (!onStable(split, this.stable.get(t.name)))
        throw new Error(`${t.name}: serves ${JSON.stringify(split)}, not 100 % ${this.stable.get(t.name)}`);
    }
  }
}

/** One breach, component by component (ms unless said); NaN when the history lacks the event. */
export interface RevertTimeline {
  /** The client's signal call until the server recorded it. */
  signalRpc: number;
  /** Signal recorded until the workflow task that reacts to it is started by the worker's poller. */
  taskDispatch: number;
  /** That workflow task, started until completed (worker activation + completion RPC). */
  workflowTask: number;
  /** Workflow tasks completed between the signal and the one that scheduled the reverts (1 = the first). */
  tasksUntilReverts: number;
  /** Commands (history events) that task wrote before its first revert: the status it publishes (timer cancel, search attributes...). */
  commandsBeforeReverts: number;
  /** Reverts scheduled until the last one started (activity dispatch). */
  activityDispatchLast: number;
  /**
   * How many reverts started within 1 ms of being scheduled: taken by the worker from the task's own
   * response (eager; the server records them started in the same update). Via the task queue it takes longer.
   */
  eagerStarts: number;
  /** Activity started (server) until its provider call began in the worker, slowest target (interceptors, heartbeat setup). */
  activityStartLast: number;
  /** Provider call began until the emulator took the revert, slowest target. */
  callToLandingLast: number;
  /** The slowest provider call (routeAll) in the worker, start to return (includes reading back / waiting for the operation). */
  providerCallSlowest: number;
  /** Signal sent until every target took the revert, as the emulators saw it. */
  total: number;
  /** Last revert activity completed until the workflow task that took the results completed. */
  completionBack: number;
  /** History length when the breach arrived (events). */
  historyAtSignal: number;
  /** In the worker (`WorkerClock`): that workflow task started (server) until its activation reached the SDK's JavaScript. */
  workerActivationIn: number;
  /** In the worker: the activation in the workflow thread (rollgate's code from the signal to the reverts scheduled). */
  workerActivate: number;
  /** In the worker: collecting that activation's sink calls (log lines, metrics; a second round trip to the workflow thread). */
  workerSinks: number;
  /** In the worker: the completion handed to core until core answered (the RespondWorkflowTaskCompleted RPC and its eager starts). */
  workerCompletion: number;
  /** In the worker: completion answered until the last revert's activity task reached JavaScript (one poll of core each). */
  workerHandover: number;
}

/** Not numbers: each revert's scheduled -> started (ms, sorted) and the commands before the reverts (event types). */
export interface RevertDetail {
  dispatchMs: number[];
  publishedBefore: string[];
}

/** The components in the order the bench prints them: [key, what it is, unit]. */
export const TIMELINE_ROWS: [keyof RevertTimeline, string, string][] = [
  ['signalRpc', 'signal sent -> signal in history (signal RPC)', 'ms'],
  ['taskDispatch', 'signal -> reacting workflow task started (task dispatch)', 'ms'],
  ['workflowTask', 'workflow task started -> completed (reverts scheduled)', 'ms'],
  ['tasksUntilReverts', 'workflow tasks from the signal to the reverts', ''],
  ['commandsBeforeReverts', 'status published before the reverts (commands in that task)', ''],
  ['activityDispatchLast', 'reverts scheduled -> last one started (activity dispatch)', 'ms'],
  ['eagerStarts', 'reverts started from the task response (eager)', ''],
  ['activityStartLast', 'activity started -> provider call began in worker, slowest', 'ms'],
  ['callToLandingLast', 'provider call began -> emulator took the revert, slowest', 'ms'],
  ['providerCallSlowest', 'provider call (routeAll) in the worker, slowest', 'ms'],
  ['completionBack', 'last revert completed -> workflow task done (completion back)', 'ms'],
  ['historyAtSignal', 'history length at the breach', 'events'],
  ['workerActivationIn', 'in the worker: task started (server) -> activation reached the SDK', 'ms'],
  ['workerActivate', 'in the worker: activation in the workflow thread', 'ms'],
  ['workerSinks', "in the worker: collecting the activation's sink calls", 'ms'],
  ['workerCompletion', 'in the worker: completion -> core answered (RPC, eager starts)', 'ms'],
  ['workerHandover', 'in the worker: core answered -> last revert task reached the SDK', 'ms'],
];
const eventType = (e: HistoryEvent) => temporal.api.enums.v1.EventType[e.eventType ?? 0].replace(/^EVENT_TYPE_/, '');
const maxOr = (xs: number[]) => (xs.length ? Math.max(...xs) : NaN);

/** The timeline of one breach from its history, the worker's provider calls and each target's landing time. */
export function revertTimeline(
  events: HistoryEvent[],
  signalName: string,
  sentMs: number,
  landedMs: Map<string, number>,
  calls: ProviderCall[],
  clock?: WorkerClock,
): RevertTimeline & RevertDetail {
  const total = Math.max(...landedMs.values()) - sentMs;
  const nan = Object.fromEntries(TIMELINE_ROWS.map(([k]) => [k, NaN])) as unknown as RevertTimeline;
  const none = { ...nan, total, dispatchMs: [], publishedBefore: [] };
  const byId = new Map(events.map((e) => [Number(e.eventId), e]));
  const sig = events.find((e) => e.workflowExecutionSignaledEventAttributes?.signalName === signalName);
  if (!sig) return none;
  const sigId = Number(sig.eventId);
  const reverts = events.filter(
    (e) => Number(e.eventId) > sigId && e.activityTaskScheduledEventAttributes?.activityType?.name === 'routeAll',
  );
  if (!reverts.length) return none;
  const completed = byId.get(Number(reverts[0].activityTaskScheduledEventAttributes!.workflowTaskCompletedEventId));
  const started = completed && byId.get(Number(completed.workflowTaskCompletedEventAttributes!.startedEventId));
  if (!completed || !started) return none;
  const ids = new Set(reverts.map((e) => Number(e.eventId)));
  const startedOf = new Map(
    events
      .filter((e) => ids.has(Number(e.activityTaskStartedEventAttributes?.scheduledEventId)))
      .map((e) => [Number(e.activityTaskStartedEventAttributes!.scheduledEventId), eventMs(e)]),
  );
  const closed = events.filter((e) => ids.has(Number(e.activityTaskCompletedEventAttributes?.scheduledEventId)));
  const schedAt = eventMs(reverts[0]);
  const dispatchMs = [...startedOf.values()].map((t) => t - schedAt).sort((x, y) => x - y);
  // Per target: the server's start of its revert activity, then the worker's first routeAll on it after the signal.
  const inWorker: number[] = [];
  const toLanding: number[] = [];
  const callMs: number[] = [];
  for (const r of reverts) {
    const name = scheduledInput<{ target: TargetSpec }>(r)?.target.name;
    const call = calls.find((c) => c.target === name && c.startMs >= eventMs(sig) - 1);
    const at = startedOf.get(Number(r.eventId));
    if (!name || !call || at === undefined) continue;
    inWorker.push(call.startMs - at);
    toLanding.push((landedMs.get(name) ?? NaN) - call.startMs);
    callMs.push(call.endMs - call.startMs);
  }
  const lastClosed = maxOr(closed.map(eventMs));
  const backTask = events.find(
    (e) => e.workflowTaskCompletedEventAttributes && Number(e.eventId) > Number(completed.eventId) && eventMs(e) >= lastClosed,
  );
  // The worker's clock: the first activation after the reacting task started, then its completion and the hand-over.
  const polled = clock ? clock.first('activation-polled', eventMs(started)) : NaN;
  const activateStart = clock ? clock.first('activate-start', polled) : NaN;
  const activateEnd = clock ? clock.first('activate-end', activateStart) : NaN;
  const sinksStart = clock ? clock.first('sinks-start', activateEnd) : NaN;
  const sinksEnd = clock ? clock.first('sinks-end', sinksStart) : NaN;
  const sent = clock ? clock.first('complete-sent', activateEnd) : NaN;
  const back = clock ? clock.first('complete-back', sent) : NaN;
  const lastHandedOver = clock ? clock.nth('activity-polled', back, reverts.length) : NaN;
  const between = events.filter((e) => Number(e.eventId) > Number(completed.eventId) && Number(e.eventId) < Number(reverts[0].eventId));
  return {
    signalRpc: eventMs(sig) - sentMs,
    taskDispatch: eventMs(started) - eventMs(sig),
    workflowTask: eventMs(completed) - eventMs(started),
    tasksUntilReverts: events.filter(
      (e) => e.workflowTaskCompletedEventAttributes && Number(e.eventId) > sigId && Number(e.eventId) <= Number(completed.eventId),
    ).length,
    commandsBeforeReverts: between.length,
    activityDispatchLast: maxOr(dispatchMs),
    eagerStarts: dispatchMs.filter((d) => d <= 1).length,
    activityStartLast: maxOr(inWorker),
    callToLandingLast: maxOr(toLanding),
    providerCallSlowest: maxOr(callMs),
    total,
    completionBack: backTask ? eventMs(backTask) - lastClosed : NaN,
    historyAtSignal: sigId,
    workerActivationIn: polled - eventMs(started),
    workerActivate: activateEnd - activateStart,
    workerSinks: sinksEnd - sinksStart,
    workerCompletion: back - sent,
    workerHandover: lastHandedOver - back,
    dispatchMs,
    publishedBefore: between.map(eventType),
  };
}
