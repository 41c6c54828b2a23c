/**
 * The release train's state and its message handlers: what each member is doing (from its reports
 * and its close), the operator's pause/resume/abort, the status query and the UI projections.
 * Deterministic: no I/O, time only from the workflow sandbox.
 */
import {
  ApplicationFailure,
  condition,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  log,
} from '@temporalio/workflow';
import {
  SA,
  abortSignal,
  abortUpdate,
  pauseSignal,
  pauseUpdate,
  resumeSignal,
  resumeUpdate,
  rolloutWorkflowId,
  type HistoryEntry,
  type Identity,
  type OperatorArgs,
} from '../contract';
import {
  trainReportSignal,
  trainStatusQuery,
  type TrainInput,
  type TrainMemberSpec,
  type TrainMemberStatus,
  type TrainReport,
  type TrainState,
  type TrainStatus,
} from '../contract';
import { releaseOrder, startable, type TrainNode } from './train-order';
import { checkIdentity, describeIdentity, unverified } from './identity';

const MAX_HISTORY = 300;

export type TrainMember = TrainMemberStatus & { spec: TrainMemberSpec['spec']; runId?: string; toldGo: number };

/** Why the train stops: an operator's abort, or a member that closed without being released. */
export interface TrainStop {
  aborted: boolean;
  message: string;
  member?: string;
}

const OPEN: TrainMember['state'][] = ['starting', 'running', 'held', 'paused'];

export class TrainRun {
  readonly spec: TrainInput['train'];
  readonly nodes: TrainNode[];
  readonly order: string[];
  state: TrainState = 'running';
  detail = 'starting';
  members = new Map<string, TrainMember>();
  history: HistoryEntry[] = [];
  /** Authenticates the messages between the train and its members (a local activity makes it). */
  nonce = '';
  /** Lockstep: the last traffic stage every member was told to go to. */
  wave = 0;
  stoppedBy?: string;
  reason?: string;
  reverted: string[] = [];
  pass = 1;
  pausedAfterRollback = false;
  /** An operator's pause while running: no member starts and no lockstep stage begins until resume. */
  paused = false;
  abort?: { by: string; reason?: string };
  resumes = 0;
  aborts = 0;
  /** Bumped by every event the train's loop waits on (a report, a member's start or close, an operator message). */
  version = 0;
  verifiesIdentities = false;
  readonly startedAtMs: number;

  constructor(readonly input: TrainInput) {
    this.spec = input.train;
    this.nodes = this.spec.members.map((m) => ({ service: m.service, dependsOn: m.dependsOn }));
    this.order = releaseOrder(this.nodes);
    this.startedAtMs = workflowInfo().runStartTime.getTime();
    this.resetMembers();
  }

  get id(): string {
    return workflowInfo().workflowId;
  }

  /** A new pass (the first, or a `resume` after a rollback): every member starts again. */
  resetMembers(): void {
    for (const m of this.spec.members)
      this.members.set(m.service, {
        service: m.service,
        release: m.spec.release,
        rolloutId: rolloutWorkflowId(m.service),
        dependsOn: m.dependsOn,
        state: 'pending',
        stages: 1 + m.spec.waves.length,
        spec: m.spec,
        toldGo: 0,
      });
    this.wave = 0;
    this.stoppedBy = undefined;
    this.reason = undefined;
    this.reverted = [];
  }

  member(service: string): TrainMember {
    return this.members.get(service)!;
  }

  isOpen(m: TrainMember): boolean {
    return OPEN.includes(m.state);
  }

  /** Members that may start now: all at once in lockstep, else those whose dependencies are promoted and held. */
  startableMembers(): TrainMember[] {
    const started = new Set([...this.members.values()].filter((m) => m.state !== 'pending').map((m) => m.service));
    if (this.spec.lockstep) return [...this.members.values()].filter((m) => !started.has(m.service));
    const promoted = new Set([...this.members.values()].filter((m) => m.state === 'held').map((m) => m.service));
    return startable(this.nodes, started, promoted).map((s) => this.member(s));
  }

  allHeld(): boolean {
    return [...this.members.values()].every((m) => m.state === 'held');
  }

  /** An abort, or the first member (in release order) that closed or escalated without being released. */
  stopToActOn(): TrainStop | undefined {
    if (this.abort) return { aborted: true, message: `aborted by ${this.abort.by}${this.abort.reason ? `: ${this.abort.reason}` : ''}` };
    for (const service of this.order) {
      const m = this.member(service);
      if (m.state === 'pending' || this.isOpen(m) || m.state === 'succeeded') continue;
      return { aborted: false, member: service, message: `member ${service} (${m.release}) ${m.state}: ${m.reason ?? 'no reason given'}` };
    }
    return undefined;
  }

  changed(): void {
    this.version++;
    this.publish();
  }

  installHandlers(): void {
    setHandler(trainStatusQuery, () => this.status());
    setHandler(trainReportSignal, (r) => this.receive(r));
    setHandler(pauseSignal, (a) => this.viaSignal('pause', a, (who) => this.pause(who, a?.reason)));
    setHandler(resumeSignal, (a) => this.viaSignal('resume', a, (who) => this.resume(who)));
    setHandler(abortSignal, (a) => this.viaSignal('abort', a, (who) => this.requestAbort(who, a?.reason)));
    const update = (action: string, act: (who: Identity, a: OperatorArgs) => string) =>
      [
        async (a: OperatorArgs) => act(await this.identify(action, a), a ?? {}),
        {
          validator: (a: OperatorArgs) => {
            if (!a?.token && this.verifiesIdentities)
              throw ApplicationFailure.nonRetryable(`${action} refused: this train verifies identities and no token was sent`, 'Refused');
          },
        },
      ] as const;
    setHandler(pauseUpdate, ...update('pause', (who, a) => this.pause(who, a.reason)));
    setHandler(resumeUpdate, ...update('resume', (who) => this.resume(who)));
    setHandler(abortUpdate, ...update('abort', (who, a) => this.requestAbort(who, a.reason)));
  }

  /** Who started the train, checked before any member starts; a refusal is returned. */
  async checkStarter(): Promise<string | undefined> {
    try {
      const r = await checkIdentity({ action: 'start', token: this.input.startToken, claimedBy: this.input.startedBy, requireToken: true });
      this.verifiesIdentities = r.verifier;
      this.record('operator', `started by ${describeIdentity(r.identity.verified ? r.identity : unverified(this.input.startedBy))}`);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /** Reports are refused (recorded) unless they carry the train's nonce; never thrown. */
  private receive(r: Partial<TrainReport> | undefined): void {
    if (typeof r !== 'object' || r === null || typeof r.service !== 'string')
      return this.record('decision', 'refused a malformed trainReport');
    const m = this.members.get(r.service);
    if (!m || r.nonce !== this.nonce || this.nonce === '')
      return this.record('decision', `refused a trainReport for ${r.service.slice(0, 100)}: it does not carry this train's nonce`);
    // A member's first report may be handled in the same activation as its start, before it.
    const moving = m.state === 'running' || m.state === 'starting';
    if (r.kind === 'held' && moving) {
      m.state = 'held';
      m.heldAtMs = Date.now();
      this.record('decision', `${m.service} ${m.release} promoted, held by the train`);
    } else if (r.kind === 'ready' && typeof r.wave === 'number' && moving) {
      m.readyAt = r.wave;
      // Asking again for a stage it was told to go to (it continued as new): it is told again.
      if (r.wave <= m.toldGo) m.toldGo = r.wave - 1;
    } else if (r.kind === 'rollback-failed' && this.isOpen(m)) {
      m.state = 'rollback-failed';
      m.reason = 'its revert failed: it escalated and waits for its operator';
      this.record('alert', `${m.service}: revert failed (the member escalated on its own)`);
    } else return;
    this.changed();
  }

  private pause(who: Identity, reason?: string): string {
    if (this.isClosed() || this.pausedAfterRollback) return `not paused: the train is ${this.state}`;
    this.paused = true;
    this.state = 'paused';
    this.record(
      'operator',
      `paused by ${describeIdentity(who)}${reason ? `: ${reason}` : ''}: no member starts and no lockstep stage begins`,
    );
    this.changed();
    return 'paused';
  }

  private resume(who: Identity): string {
    if (!this.paused && !this.pausedAfterRollback) return `not resumed: the train is ${this.state}, not paused`;
    this.record('operator', `resumed by ${describeIdentity(who)}`);
    this.resumes++;
    this.paused = false;
    if (!this.pausedAfterRollback) this.state = 'running';
    this.changed();
    return 'resumed';
  }

  private requestAbort(who: Identity, reason?: string): string {
    if (this.isClosed()) return `not aborted: the train is ${this.state}`;
    this.record('operator', `abort requested by ${describeIdentity(who)}${reason ? `: ${reason}` : ''}`);
    this.aborts++;
    this.abort ??= { by: who.name, ...(reason ? { reason } : {}) };
    this.changed();
    return 'abort requested';
  }

  private viaSignal(action: string, a: { by?: string } | undefined, act: (who: Identity) => void): void {
    if (this.verifiesIdentities)
      return this.record('operator', `ignored a ${action} signal: this train verifies identities, send it with a token`);
    act(unverified(a?.by));
  }

  private async identify(action: string, a: OperatorArgs | undefined): Promise<Identity> {
    if (!a?.token && !this.verifiesIdentities) return unverified(a?.by);
    return (await checkIdentity({ action, token: a?.token, claimedBy: a?.by, requireToken: true })).identity;
  }

  /** Paused after a rollback: wait for a `resume` (retry the train) or an `abort` (close it) sent from now on. */
  async awaitOperator(): Promise<'resume' | 'abort'> {
    const since = { resumes: this.resumes, aborts: this.aborts };
    this.abort = undefined;
    await condition(() => this.resumes > since.resumes || this.aborts > since.aborts);
    return this.aborts > since.aborts ? 'abort' : 'resume';
  }

  isClosed(): boolean {
    return !['running', 'paused', 'rollback-failed'].includes(this.state);
  }

  record(kind: HistoryEntry['kind'], text: string): void {
    this.history.push({ atMs: Date.now(), kind, text });
    if (this.history.length > MAX_HISTORY) this.history.shift();
    log.info(text, { trainId: this.id, train: this.spec.train });
  }

  setDetail(detail: string): void {
    this.detail = detail;
    this.publish();
  }

  status(): TrainStatus {
    return {
      id: this.id,
      train: this.spec.train,
      state: this.state,
      detail: this.detail,
      lockstep: this.spec.lockstep,
      order: this.order,
      members: this.order.map((s) => {
        const { spec: _spec, runId: _runId, toldGo: _told, ...m } = this.member(s);
        return m;
      }),
      wave: this.wave,
      ...(this.stoppedBy ? { stoppedBy: this.stoppedBy } : {}),
      ...(this.reason ? { reason: this.reason } : {}),
      reverted: this.reverted,
      pass: this.pass,
      pausedAfterRollback: this.pausedAfterRollback,
      history: this.history,
      startedBy: this.input.startedBy,
      startedAtMs: this.startedAtMs,
    };
  }

  private publishedState = '';
  publish(): void {
    if (this.state !== this.publishedState) {
      this.publishedState = this.state;
      upsertSearchAttributes([{ key: SA.state, value: this.state }]);
    }
    const rows = this.order.map((s) => {
      const m = this.member(s);
      return `| ${m.service} | ${m.release} | ${m.dependsOn.join(', ') || '-'} | ${m.state}${m.readyAt ? ` (ready for stage ${m.readyAt})` : ''} |`;
    });
    setCurrentDetails(
      `**${this.state}** · train \`${this.spec.train}\`${this.spec.lockstep ? ` · lockstep stage ${this.wave}` : ''} · ${this.detail}\n\n| member | release | depends on | state |\n|---|---|---|---|\n${rows.join('\n')}`,
    );
  }
}
