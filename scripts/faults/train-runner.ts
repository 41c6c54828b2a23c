/**
 * One release-train fault schedule end to end (`npm run faults -- --trains`): generate the members,
 * their faults and the train's events from the seed, seed every member's targets in one
 * environment, start the train, fire the events, play the operators (member approvals, a member's
 * rollback-failed, the train's pause after a stop), then check the invariant for every member in
 * the emulators: a train that stopped leaves every member's targets 100 % on stable (and they stay
 * so), a train that succeeded leaves them 100 % on new, one new version per target, every alert
 * delivered or its failure recorded, no member left open once the train has closed.
 */
import { randomBytes } from 'node:crypto';
import { WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { startTrain } from '../../src/train-client';
import { validateTrain } from '../../src/spec/train';
import {
  abortSignal,
  approveUpdate,
  externalVerdictSignal,
  messageNonceQuery,
  pauseSignal,
  rejectUpdate,
  resumeSignal,
  rolloutWorkflowId,
  trainStatusQuery,
  type HistoryEntry,
  type RolloutResult,
  type RolloutStatus,
  type TrainResult,
  type TrainStatus,
} from '../../src/contract';
import { Rng } from './prng';
import { serverRestartEvent } from './fault-gen';
import { FAULTS_WEBHOOK_ENV, ScheduleEnv, type Shared } from './env';
import { fireEnvironmentEvent, type EventContext } from './env-events';
import { DriverBase, pollUntil, sleep } from './driver-base';
import { armProviderFaults } from './provider-faults';
import { checkOneVersion, checkPromoted, checkStable, describeTarget } from './invariants';
import { closingAfterFailedRevert, queryStatus, withDeadline, type RunOptions, type ScheduleResult } from './runner';
import { describeTrainSchedule, describeTrainShape, generateTrainSchedule, type TrainEvent, type TrainSchedule } from './train-gen';

/** A train runs its members one after another: it gets more time than one rollout. */
const TRAIN_TIMEOUT_FACTOR = 2;

export async function runTrainSchedule(seed: number, shared: Shared, opts: RunOptions): Promise<ScheduleResult> {
  const t0 = Date.now();
  const rng = new Rng(seed);
  const name = `tz${seed}-${randomBytes(2).toString('hex')}`;
  const env = new ScheduleEnv(shared, `faults-${name}`, opts.kills);
  const result: ScheduleResult = {
    seed,
    service: name,
    shape: '',
    faults: '',
    outcome: 'not started',
    durationMs: 0,
    violations: [],
    trace: [],
  };
  try {
    await env.start();
    const plan = generateTrainSchedule(rng, { train: name, webhookEnv: FAULTS_WEBHOOK_ENV, workDir: env.workDir, kills: opts.kills });
    if (opts.restarts) {
      if (!shared.restartServer) throw new Error('--restarts needs a dev server this process started (not --temporal)');
      plan.events.push(serverRestartEvent(new Rng(seed ^ 0x5e7e5)));
    }
    result.shape = describeTrainShape(plan);
    result.faults = describeTrainSchedule(plan);
    for (const m of plan.members) {
      await env.seed(m.spec);
      armProviderFaults(env, m.spec, m.schedule.providerFaults);
      env.startTraffic(m.spec);
    }
    if (plan.webhookFaults) env.webhook.failNext(plan.webhookFaults.n, plan.webhookFaults.status);
    await env.startWorker();
    const train = validateTrain(
      { train: name, lockstep: plan.lockstep, services: plan.members.map((m) => ({ spec: m.spec, depends_on: m.dependsOn })) },
      env.workDir,
    );
    const handle = await startTrain(shared.client, train, {
      startedBy: 'carol',
      taskQueue: env.taskQueue,
      runnerTaskQueue: env.runnerTaskQueue,
      memberParentCheckMs: 5_000,
    });
    await new TrainDriver(env, plan, handle, opts, result).run();
  } catch (err) {
    result.violations.push({ invariant: 'harness', detail: `schedule could not run: ${(err as Error).stack ?? err}`.slice(0, 800) });
  } finally {
    await env.close().catch(() => undefined);
    result.durationMs = Date.now() - t0;
  }
  return result;
}

class TrainDriver extends DriverBase<TrainResult> {
  private readonly pending: TrainEvent[];
  private readonly stageSeenAt = new Map<string, number>();
  private readonly members: WorkflowHandle[];
  private memberStatus: (RolloutStatus | undefined)[] = [];
  private trainStatus?: TrainStatus;
  private readonly handled = new Set<string>();
  /** Members seen in rollback-failed (their revert failed): each must have sent its own alert. */
  private readonly escalated = new Set<string>();
  /** Per member service: the targets whose every traffic write the schedule broke (a rollback-failed alert must name them). */
  private readonly brokenReverts = new Map<string, Set<string>>();
  private resumedTrain = false;
  private endRequested = false;
  private lastSig = '';
  private lastProgressMs = Date.now();

  constructor(
    private readonly env: ScheduleEnv,
    private readonly plan: TrainSchedule,
    private readonly handle: WorkflowHandle,
    private readonly opts: RunOptions,
    private readonly result: ScheduleResult,
  ) {
    super(handle, result, opts.log, 'train seed');
    this.pending = [...plan.events];
    this.members = plan.members.map((m) => handle.client.getHandle(rolloutWorkflowId(m.service)));
  }

  /** The train's status and each started member's (undefined when it does not answer in time). */
  private async poll(): Promise<TrainStatus | undefined> {
    try {
      this.trainStatus = await withDeadline(this.handle, 3_000, () => this.handle.query(trainStatusQuery));
    } catch {
      return undefined;
    }
    const ts = this.trainStatus;
    this.memberStatus = await Promise.all(
      this.members.map(async (h, i) => {
        const state = ts.members.find((x) => x.service === this.plan.members[i].service)?.state;
        if (!state || state === 'pending' || state === 'not-started') return undefined;
        return queryStatus(h);
      }),
    );
    const now = Date.now();
    this.memberStatus.forEach((s, i) => {
      if (!s) return;
      const stages = s.history.map((e) => (e.kind === 'stage' ? /^stage (\S+?): /.exec(e.text)?.[1] : undefined));
      for (const st of [...stages, s.stage, s.awaitingApproval ? `await:${s.awaitingApproval}` : undefined])
        if (st && !this.stageSeenAt.has(`${i}|${st}`)) this.stageSeenAt.set(`${i}|${st}`, now);
    });
    return ts;
  }

  protected async drive(): Promise<void> {
    const timeoutMs = this.opts.timeoutMs * TRAIN_TIMEOUT_FACTOR;
    while (!this.closed) {
      if (Date.now() - this.startMs > timeoutMs) {
        this.violate(
          'stall',
          `train still open after ${timeoutMs / 1000} s (state ${this.trainStatus?.state}: ${this.trainStatus?.detail})`,
        );
        return this.forceClose();
      }
      const ts = await this.poll();
      this.env.sampleWrites();
      if (ts && !this.closed) {
        if (this.detectStall(ts)) return this.forceClose();
        await this.operateMembers();
        await this.operateTrain(ts);
      }
      this.fireDue();
      if (!this.closed) await sleep(200);
    }
    await this.finalChecks();
  }

  /** Waiting on a human: the train paused, or a member waiting for an approval, paused or escalated. */
  private humanWait(ts: TrainStatus): boolean {
    return (
      ts.state !== 'running' ||
      this.memberStatus.some((s) => s && (!!s.awaitingApproval || s.state === 'paused' || s.state === 'rollback-failed'))
    );
  }

  private detectStall(ts: TrainStatus): boolean {
    const sig = JSON.stringify([
      ts.state,
      ts.detail,
      ts.members.map((m) => m.state),
      ts.history.length,
      this.memberStatus.map((s) => s && [s.state, s.stage, s.detail, s.awaitingApproval, s.history.length, s.targets.map((t) => t.weight)]),
    ]);
    const now = Date.now();
    if (sig !== this.lastSig) {
      this.lastSig = sig;
      this.lastProgressMs = now;
      return false;
    }
    if (!this.humanWait(ts) && now - this.lastProgressMs > this.opts.stallMs) {
      this.violate('stall', `no progress for ${Math.round((now - this.lastProgressMs) / 1000)} s while the train runs: ${ts.detail}`);
      return true;
    }
    return false;
  }

  private fireDue() {
    const now = Date.now();
    for (let i = 0; i < this.pending.length;) {
      const e = this.pending[i];
      const t = e.trigger;
      const seen = 'stage' in t ? this.stageSeenAt.get(`${e.member}|${t.stage}`) : undefined;
      const due = 'atMs' in t ? now - this.startMs >= t.atMs : seen !== undefined && now - seen >= t.delayMs;
      if (!due) {
        i++;
        continue;
      }
      this.pending.splice(i, 1);
      this.fire(e);
    }
  }

  private fire(e: TrainEvent) {
    const a = e.action;
    const t = this.handle;
    const m = e.member !== undefined ? this.members[e.member] : undefined;
    const who = e.member !== undefined ? `m${e.member}` : 'train';
    if (a.kind === 'break-reverts' && e.member !== undefined) {
      const service = this.plan.members[e.member].service;
      this.brokenReverts.set(service, (this.brokenReverts.get(service) ?? new Set()).add(a.target));
    }
    if (a.kind !== 'train-pause' && a.kind !== 'train-abort' && fireEnvironmentEvent(a, this.eventContext(e.member))) return;
    switch (a.kind) {
      case 'train-pause':
        this.background(this.sendTo(t, 'pause the train', () => t.signal(pauseSignal, { by: 'alice', reason: 'fault schedule' })));
        if (a.resumeAfterMs !== undefined)
          this.later(a.resumeAfterMs, () =>
            this.sendTo(t, 'resume the train (after its pause)', () => t.signal(resumeSignal, { by: 'alice' })),
          );
        if (a.abortAfterMs !== undefined)
          this.later(a.abortAfterMs, () =>
            this.sendTo(t, 'abort the train (after its pause)', () => t.signal(abortSignal, { by: 'alice' })),
          );
        return;
      case 'train-abort':
        this.background(
          this.delivered(t, `abort the train (at ${who}'s ${(e.trigger as { stage: string }).stage})`, () =>
            t.signal(abortSignal, { by: 'alice', reason: 'fault schedule' }),
          ).then((sent) => {
            if (sent) this.endRequested = true;
          }),
        );
        return;
      case 'pause':
        this.background(this.sendTo(m!, `pause ${who}`, () => m!.signal(pauseSignal, { by: 'alice', reason: 'fault schedule' })));
        if (a.resumeAfterMs !== undefined) this.later(a.resumeAfterMs, () => this.resumeMemberPause(e.member!));
        if (a.abortAfterMs !== undefined)
          this.later(a.abortAfterMs, () => this.sendTo(m!, `abort ${who} (after pause)`, () => m!.signal(abortSignal, { by: 'alice' })));
        return;
      case 'resume':
        this.background(this.resumeMemberPause(e.member!));
        return;
      case 'abort':
        this.background(this.sendTo(m!, `abort ${who}`, () => m!.signal(abortSignal, { by: 'alice', reason: 'fault schedule' })));
        return;
      case 'verdict':
        this.background(
          this.sendTo(m!, `external verdict fail on ${who}`, async () => {
            const nonce = await m!.query(messageNonceQuery).catch(() => undefined);
            return m!.signal(externalVerdictSignal, {
              verdict: 'fail',
              reason: 'external check (train fault schedule)',
              atMs: Date.now(),
              ...(nonce ? { nonce } : {}),
            });
          }),
        );
        return;
    }
  }

  private eventContext(member: number | undefined): EventContext {
    return {
      env: this.env,
      trace: (line) => this.trace(line),
      survivor: (fn) => this.later(0, fn, { survivesStop: true }),
      done: () => this.done,
      target: (name) => this.plan.members[member ?? 0].spec.targets.find((x) => x.name === name)!,
    };
  }

  /** A resume meant for a member's operator pause (not sent once it stopped: a resume there retries the release). */
  private async resumeMemberPause(i: number): Promise<void> {
    const s = await queryStatus(this.members[i]);
    if (!s || s.pausedAfterRollback || s.state === 'rollback-failed' || s.stage === 'rollback')
      return this.trace(`(resume of m${i} not sent: it stopped meanwhile)`);
    await this.sendTo(this.members[i], `resume m${i}`, () => this.members[i].signal(resumeSignal, { by: 'alice' }));
  }

  /** Members' operators: approvals as planned, and a member whose revert failed is fixed, then resumed or aborted. */
  private async operateMembers(): Promise<void> {
    const pass = this.trainStatus?.pass ?? 1;
    for (const [i, s] of this.memberStatus.entries()) {
      if (!s || !['running', 'paused', 'rollback-failed'].includes(s.state)) continue;
      const h = this.members[i];
      const plan = this.plan.members[i].schedule;
      if (s.awaitingApproval && !this.handled.has(`${pass}|${i}|approve|${s.awaitingApproval}`)) {
        const wave = s.awaitingApproval;
        this.handled.add(`${pass}|${i}|approve|${wave}`);
        const p = plan.approvals[wave] ?? { decision: 'approve', afterMs: 0 };
        if (p.decision === 'approve')
          this.later(p.afterMs, () =>
            this.sendTo(h, `approve m${i} ${wave}`, () => h.executeUpdate(approveUpdate, { args: [{ by: 'alice' }] })),
          );
        else if (p.decision === 'reject')
          this.later(p.afterMs, () =>
            this.sendTo(h, `reject m${i} ${wave}`, () =>
              h.executeUpdate(rejectUpdate, { args: [{ by: 'bob', reason: 'fault schedule says no' }] }),
            ),
          );
        else this.trace(`leave m${i} ${wave} waiting for approval`);
      }
      // Once per escalation: the rollout records "escalating: ..." as it enters rollback-failed (its
      // alert is recorded later, once sent: counting alerts answered one escalation twice).
      const escalations = s.history.filter((e) => e.kind === 'alert' && /^escalating: /.test(e.text)).length;
      const key = `${pass}|${i}|rollback-failed|${s.pass ?? 1}|${escalations}`;
      if (s.state === 'rollback-failed' && !closingAfterFailedRevert(s) && !this.handled.has(key)) {
        this.handled.add(key);
        this.pending.length = 0; // fixed by hand: nothing breaks it again
        this.escalated.add(this.plan.members[i].service);
        this.trace(`m${i} rollback-failed: ${s.detail.slice(0, 160)}`);
        this.env.clearFaults();
        this.env.breaching.clear();
        this.trace('targets fixed (faults cleared)');
        if (plan.afterRollbackFailed === 'abort') {
          await this.sendTo(h, `abort m${i} (in rollback-failed)`, () => h.signal(abortSignal, { by: 'alice', reason: 'fixed by hand' }));
          // Taken once it records the last try of its reverts (it stays rollback-failed until that try and its alert are done).
          this.background(this.checkAnswerTaken(i, 'abort', (m) => m.state !== 'rollback-failed' || closingAfterFailedRevert(m), 10_000));
        } else {
          await this.sendTo(h, `resume m${i} (retry its failed reverts)`, () => h.signal(resumeSignal, { by: 'alice' }));
          this.background(this.checkAnswerTaken(i, 'resume', (m) => m.state !== 'rollback-failed', 30_000));
        }
      }
    }
  }

  /**
   * The operator's answer to a member's rollback-failed is taken within `ms` (the rollout driver's
   * check): its abort begins the last try of the reverts, its resume retries them (faults cleared).
   * The member also answers when it has closed meanwhile.
   */
  private async checkAnswerTaken(i: number, answer: string, taken: (s: RolloutStatus) => boolean, ms: number): Promise<void> {
    const { ok, last } = await pollUntil(() => queryStatus(this.members[i]), taken, ms);
    if (!ok && (await this.openMembers()).includes(i))
      this.violate(
        'operator',
        `${answer} of ${this.plan.members[i].service} in rollback-failed was not taken within ${ms / 1000} s (state ${last?.state}: ${last?.detail.slice(0, 160)})`,
      );
  }

  /** The train's operator: after its stop (every member stable, then resume once or close), and a wait nobody answers. */
  private async operateTrain(ts: TrainStatus): Promise<void> {
    if (ts.pausedAfterRollback && !this.handled.has(`train-paused|${ts.pass}`)) {
      this.handled.add(`train-paused|${ts.pass}`);
      this.epoch++;
      this.trace(
        `train paused after a stop by ${ts.stoppedBy ?? '?'}: ${(ts.reason ?? '').slice(0, 160)}; reverted ${ts.reverted.join(', ') || 'none'}`,
      );
      // A member whose revert failed is announced and handled by its operator: wait for it to close.
      if (!(await this.membersClosed(60_000)))
        this.violate(
          'operator',
          `a member was still open 60 s after the train paused and its operator fixed it: ${(await this.openMembers()).map((i) => this.plan.members[i].service).join(', ')}`,
        );
      await this.checkStableTwice(`train paused after its stop (pass ${ts.pass})`);
      if (this.plan.afterRollback.resumeOnce && !this.resumedTrain) {
        this.resumedTrain = true;
        if (this.plan.afterRollback.clearBreach) {
          this.env.breaching.clear();
          this.env.clearFaults();
          this.trace('breach and faults cleared');
        }
        this.pending.length = 0;
        await this.sendTo(this.handle, 'resume the train (run it again)', () => this.handle.signal(resumeSignal, { by: 'alice' }));
        return;
      }
      this.endRequested = true;
      this.pending.length = 0;
      await this.sendTo(this.handle, 'abort the train (close it after its stop)', () => this.handle.signal(abortSignal, { by: 'alice' }));
      return;
    }
    // A decision nobody will take (a pause never resumed, an approval left): the checker closes the train.
    if (!this.endRequested && this.humanWait(ts) && !ts.pausedAfterRollback && this.timers === 0) {
      const escalated = this.memberStatus.some((s) => s?.state === 'rollback-failed');
      if (escalated || this.pending.some((e) => 'atMs' in e.trigger)) return;
      this.endRequested = true;
      this.pending.length = 0;
      await this.sendTo(
        this.handle,
        `abort the train (left waiting: ${ts.state === 'running' ? 'a member waits for a human' : ts.state})`,
        () => this.handle.signal(abortSignal, { by: 'checker', reason: 'end of fault schedule' }),
      );
    }
  }

  /** Until no member rollout is open (false on timeout); members' operators keep acting meanwhile. */
  private async membersClosed(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const open = await this.openMembers();
      if (open.length === 0) return true;
      this.memberStatus = await Promise.all(this.members.map((h, i) => (open.includes(i) ? queryStatus(h) : Promise.resolve(undefined))));
      await this.operateMembers();
      this.env.sampleWrites();
      await sleep(250);
    }
    return false;
  }

  private async openMembers(): Promise<number[]> {
    const open: number[] = [];
    for (const [i, h] of this.members.entries()) {
      try {
        const d = await withDeadline(h, 5_000, () => h.describe());
        if (d.status.name === 'RUNNING') open.push(i);
      } catch (err) {
        // Not started is not open; a server that does not answer is not "closed" either.
        if (!(err instanceof WorkflowNotFoundError)) open.push(i);
      }
    }
    return open;
  }

  /** After the train closed: every member must close too (a member whose revert failed, once its operator acts). */
  private async drainMembers(): Promise<void> {
    if (await this.membersClosed(90_000)) return;
    for (const i of await this.openMembers()) {
      this.violate(
        'stall',
        `member ${this.plan.members[i].service} still open 90 s after its train closed (${this.memberStatus[i]?.state}: ${this.memberStatus[i]?.detail})`,
      );
      await withDeadline(this.members[i], 10_000, () => this.members[i].terminate('train fault schedule: left open')).catch(
        () => undefined,
      );
    }
  }

  private async stableProblems(skip: string[] = []): Promise<string[]> {
    const out: string[] = [];
    for (const m of this.plan.members)
      if (!skip.includes(m.service)) out.push(...(await checkStable(this.env, m.spec)).map((p) => `${m.service} ${p}`));
    return out;
  }

  private async checkStableTwice(phase: string): Promise<void> {
    const first = await this.stableProblems();
    for (const p of first) this.violate('stable', `${phase}: ${p}`);
    await sleep(this.opts.recheckMs);
    await this.quiesce();
    for (const p of await this.stableProblems()) {
      if (first.some((f) => f.split(':')[0] === p.split(':')[0])) continue;
      this.violate('late-write', `${phase}: a write landed after the reverts: ${p}`);
    }
  }

  /** Until no member run has an activity pending (a retry in flight could still write), then no write for a second. */
  private async quiesce(maxMs = 30_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    while (Date.now() < deadline) {
      let pending = 0;
      for (const h of this.members) {
        const d = await withDeadline(h, 5_000, () => h.describe()).catch(() => undefined);
        if (d?.status.name === 'RUNNING') pending += d.raw.pendingActivities?.length ?? 0;
      }
      this.env.sampleWrites();
      if (pending === 0 && Date.now() - this.env.lastWriteMs() > 1_000) return;
      await sleep(250);
    }
    this.trace(`member activities still pending after ${maxMs / 1000} s`);
  }

  private async forceClose(): Promise<void> {
    this.result.outcome = `stalled (terminated by the checker in state ${this.trainStatus?.state})`;
    await withDeadline(this.handle, 10_000, () => this.handle.terminate('train fault schedule checker: stalled')).catch(() => undefined);
    for (const h of this.members)
      await withDeadline(h, 10_000, () => h.terminate('train fault schedule checker: stalled')).catch(() => undefined);
    await this.env.stopWorker();
  }

  /** Every run's history of every member (a train that ran again started new runs). */
  private async memberHistories(): Promise<Map<string, HistoryEntry[][]>> {
    const out = new Map<string, HistoryEntry[][]>();
    for (const m of this.plan.members) {
      const id = rolloutWorkflowId(m.service);
      out.set(m.service, []);
      for await (const wf of this.handle.client.list({ query: `WorkflowId = '${id}'` })) {
        const h = this.handle.client.getHandle(id, wf.runId, { followRuns: false });
        const r = (await withDeadline(h, 10_000, () => h.result()).catch(() => undefined)) as RolloutResult | undefined;
        if (r?.status?.history) out.get(m.service)!.push(r.status.history);
      }
    }
    return out;
  }

  private async finalChecks(): Promise<void> {
    const c = this.closed!;
    let finalState: string;
    if (c.ok) finalState = c.result.state;
    else {
      finalState = 'execution-failed';
      this.violate('workflow-failed', `the train execution ended without a result: ${c.error.message.split('\n')[0]}`);
    }
    this.result.outcome = finalState;
    this.trace(`train closed: ${finalState}${c.ok && c.result.reason ? ` (${c.result.reason.slice(0, 200)})` : ''}`);
    const stopped = finalState !== 'succeeded';
    const check = async (skip: string[] = []) => {
      const out: string[] = [];
      for (const m of this.plan.members)
        if (!skip.includes(m.service))
          out.push(...(await (stopped ? checkStable(this.env, m.spec) : checkPromoted(this.env, m.spec))).map((p) => `${m.service} ${p}`));
      return out;
    };
    // At the close, before anyone fixes anything: a member still open (its revert failed, it waits
    // for its operator, announced) is checked once its operator has acted.
    const waiting = (await this.openMembers()).map((i) => this.plan.members[i].service);
    const first = await check(waiting);
    for (const p of first) this.violate(stopped ? 'stable' : 'promoted', `train closed ${finalState}: ${p}`);
    await this.drainMembers();
    await sleep(this.opts.recheckMs);
    await this.env.stopWorker();
    await this.quiesce(10_000);
    for (const p of await check()) {
      if (first.some((f) => f.split(':')[0] === p.split(':')[0])) continue;
      const service = p.split(' ')[0];
      if (waiting.includes(service)) this.violate('stable', `train closed ${finalState}, ${service} closed after its operator acted: ${p}`);
      else this.violate(stopped ? 'late-write' : 'promoted', `train closed ${finalState}: a write landed after it closed: ${p}`);
    }
    for (const m of this.plan.members)
      for (const p of await checkOneVersion(this.env, m.spec)) this.violate('one-version', `${m.service} ${p}`);
    if (c.ok) {
      await sleep(500);
      for (const p of this.alertProblems(
        c.result.status.history,
        await this.memberHistories(),
        finalState,
        c.result.status.revertFailed ?? [],
      ))
        this.violate('alerts', p);
    }
    if (this.result.violations.some((v) => ['stable', 'late-write', 'promoted'].includes(v.invariant)))
      for (const m of this.plan.members) for (const t of m.spec.targets) this.trace(`  ${t.name}: ${await describeTarget(this.env, t)}`);
  }

  /**
   * (4) for a train: every alert recorded as delivered (by the train or any member run) reached the
   * webhook, everything the webhook got is recorded somewhere; a train that paused after a stop sent
   * (or recorded the failure of) its alert; a member whose revert failed escalated with its own.
   */
  private alertProblems(
    train: HistoryEntry[],
    members: Map<string, HistoryEntry[][]>,
    finalState: string,
    revertFailed: string[],
  ): string[] {
    const RECORD = /^(\S+) alert (delivered \(HTTP \d+\)|NOT delivered: )/;
    const records = [train, ...[...members.values()].flat()]
      .flat()
      .filter((e) => e.kind === 'alert')
      .map((e) => RECORD.exec(e.text))
      .filter((m): m is RegExpExecArray => !!m);
    const received = this.env.webhook.received.map((r) => r.body?.rollgate?.event as string | undefined);
    const count = (xs: (string | undefined)[], e: string) => xs.filter((x) => x === e).length;
    const problems: string[] = [];
    for (const event of new Set(records.map((m) => m[1]))) {
      const delivered = records.filter((m) => m[1] === event && m[2].startsWith('delivered')).length;
      if (count(received, event) < delivered)
        problems.push(`${delivered} "${event}" alert(s) recorded as delivered, the webhook received ${count(received, event)}`);
    }
    for (const event of new Set(received))
      if (event && !records.some((m) => m[1] === event)) problems.push(`the webhook received a "${event}" alert that no history records`);
    const trainAlerts = train.filter((e) => e.kind === 'alert' && /^train-rolled-back alert/.test(e.text)).length;
    const pauses = [...this.handled].filter((k) => k.startsWith('train-paused|')).length;
    if (trainAlerts < pauses)
      problems.push(`the train paused after a stop ${pauses} time(s) but sent or recorded ${trainAlerts} train-rolled-back alert(s)`);
    if (finalState === 'rolled-back' && trainAlerts === 0)
      problems.push('the train paused after a stop (closed rolled-back) but sent no train-rolled-back alert, nor recorded its failure');
    // Each member the checker found escalated (its revert failed) sent its own rollback-failed alert, or recorded its failure.
    for (const service of new Set([...this.escalated, ...revertFailed]))
      if (!(members.get(service) ?? []).flat().some((e) => e.kind === 'alert' && /^rollback-failed alert/.test(e.text)))
        problems.push(`member ${service} escalated (its revert failed) but recorded no rollback-failed alert`);
    // A member's rollback-failed alert names every target of it whose writes the schedule broke.
    for (const r of this.env.webhook.received) {
      const body = r.body;
      if (body?.rollgate?.event !== 'rollback-failed') continue;
      for (const t of this.brokenReverts.get(body.rollgate.service) ?? [])
        if (!String(body.text).includes(t) && !(body.rollgate?.revertedTargets ?? []).includes(t))
          problems.push(`${body.rollgate.service}'s rollback-failed alert does not name target ${t}: ${String(body.text).slice(0, 200)}`);
    }
    return problems;
  }
}
