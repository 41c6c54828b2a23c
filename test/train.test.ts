/**
 * Release trains end to end on the real dev server, moto (through the fault proxy) and the Cloud
 * Run fake: dependency order and parallel branches, lockstep, a breach in the middle member
 * reverting the others dependents first, a cycle refused before anything starts, and the worker
 * SIGKILLed mid-train. Order and state are read from the emulators: Lambda writes as the proxy
 * forwards them, the Cloud Run fake's served split sampled every 20 ms.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { WorkflowNotFoundError } from '@temporalio/client';
import { main } from '../src/cli/main';
import { lambdaOp } from '../src/dev/fault-proxy';
import { validateTrain } from '../src/spec/train';
import type { CloudRunTargetSpec, LambdaTargetSpec, RolloutSpec, RolloutSpecInput, TargetSpec } from '../src/spec/schema';
import { getTrainView, startTrain } from '../src/train-client';
import { SA, statusQuery, type RolloutStatus } from '../src/contract';
import { trainDecisionSignal, trainStatusQuery, type TrainResult, type TrainSpec, type TrainStatus } from '../src/contract';
import { startChildWorker, sigkill } from './support/child-worker';
import { recordHistory } from './support/history';
import { aliasState, publishedVersions } from './support/lambda';
import { cloudRunState, cloudRunTarget, mixedSpec, seedCloudRun, simulateCloudRunTraffic } from './support/cloud-run';
import { createFunctions, createHarness, simulateTraffic, type Harness } from './support/harness';

let h: Harness;
let child: ChildProcess | undefined;
beforeAll(async () => {
  h = await createHarness('train', { cloudRun: true });
  await h.startWorker();
  process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
});
afterEach(async () => {
  if (child) await sigkill(child);
  child = undefined;
});
afterAll(async () => h?.close());

/** A Lambda target with a function of its own (the proxy sees no region: one function per target). */
function fn(service: string, name: string, region = 'us-east-1'): LambdaTargetSpec {
  return { name, provider: 'aws-lambda', region, function: `${service}-${name}`, alias: 'live' };
}

/** One target, a canary then promote; `bake` of the canary. */
function single(service: string, target: TargetSpec, bake = '1 second', over: Partial<RolloutSpecInput> = {}): RolloutSpec {
  return mixedSpec(h, service, [target], { canary: { targets: [target.name], weight: 10, bake }, waves: [] }, over);
}

function train(name: string, members: { spec: RolloutSpec; depends_on?: string[] }[], lockstep = false): TrainSpec {
  return validateTrain(
    { train: name, lockstep, services: members.map((m) => ({ spec: m.spec, depends_on: m.depends_on ?? [] })) },
    h.workDir,
  );
}

/** Every Lambda write the proxy forwards (code, publish, alias), with its time and, for aliases, the routing. */
function recordLambdaWrites() {
  const writes: { fn: string; op: 'code' | 'publish' | 'alias'; version?: string; weights: Record<string, number>; atMs: number }[] = [];
  h.proxy.observers.push((call, body, status) => {
    if (status >= 300 || call.method === 'GET') return;
    const fnName = /\/functions\/([^/?]+)/.exec(call.path)?.[1];
    if (!fnName) return;
    const op = lambdaOp.updateAlias()(call)
      ? 'alias'
      : lambdaOp.publishVersion()(call)
        ? 'publish'
        : lambdaOp.updateCode()(call)
          ? 'code'
          : undefined;
    if (!op) return;
    const b = op === 'alias' ? JSON.parse(body.toString('utf8') || '{}') : {};
    writes.push({ fn: fnName, op, version: b.FunctionVersion, weights: b.RoutingConfig?.AdditionalVersionWeights ?? {}, atMs: Date.now() });
  });
  const of = (f: string, op?: string) => writes.filter((w) => w.fn === f && (!op || w.op === op));
  return {
    writes,
    /** First write that changed the function's code: the member's deploy began. */
    deployedAt: (f: string) => of(f, 'code')[0]?.atMs,
    /** The alias moved to 100 % on `version`. */
    routedAllAt: (f: string, version: string) =>
      of(f, 'alias').find((w) => w.version === version && Object.keys(w.weights).length === 0)?.atMs,
    /** First alias write with a weight on the new version (the canary or a wave step). */
    firstShiftAt: (f: string) => of(f, 'alias').find((w) => Object.keys(w.weights).length > 0)?.atMs,
    /** First alias write that moved traffic off version 1 (a weight on the new version, or the new version itself). */
    firstForwardAt: (f: string) =>
      of(f, 'alias').find((w) => (w.version !== undefined && w.version !== '1') || Object.keys(w.weights).length > 0)?.atMs,
    /** The last write that put the alias back on `version` with no weights (a revert). */
    lastRevertAt: (f: string, version = '1') =>
      of(f, 'alias')
        .filter((w) => w.version === version && Object.keys(w.weights).length === 0)
        .pop()?.atMs,
  };
}

/** The Cloud Run fake's served split and revisions per service, sampled; each change with its time. */
function sampleCloudRun(targets: CloudRunTargetSpec[]) {
  const changes: { service: string; split: Record<string, number>; revisions: number; atMs: number }[] = [];
  const last = new Map<string, string>();
  const sample = () => {
    for (const t of targets) {
      const s = cloudRunState(h, t);
      const key = JSON.stringify([s.split, s.revisions.length]);
      if (last.get(t.service) === key) continue;
      last.set(t.service, key);
      changes.push({ service: t.service, split: s.split, revisions: s.revisions.length, atMs: Date.now() });
    }
  };
  sample();
  const timer = setInterval(sample, 20);
  const of = (svc: string) => changes.filter((c) => c.service === svc);
  return {
    stop: () => clearInterval(timer),
    /** A second revision appeared: the member's deploy. */
    deployedAt: (svc: string) => of(svc).find((c) => c.revisions > 1)?.atMs,
    servedAllAt: (svc: string, rev: string) => of(svc).find((c) => c.split[rev] === 100)?.atMs,
    lastBackOnAt: (svc: string, rev: string) =>
      of(svc)
        .filter((c) => c.split[rev] === 100 && c.revisions > 1)
        .pop()?.atMs,
  };
}

function traffic(specs: RolloutSpec[], badRevision?: string) {
  const sims = specs.flatMap((s) => [
    ...(s.targets.some((t) => t.provider === 'aws-lambda') ? [simulateTraffic(h, s)] : []),
    ...(s.targets.some((t) => t.provider === 'cloud-run') ? [simulateCloudRunTraffic(h, s, (_t, rev) => rev === badRevision)] : []),
  ]);
  return { stop: () => sims.forEach((s) => s.stop()) };
}

async function waitForTrain(id: string, pred: (s: TrainStatus) => boolean, what: string, timeoutMs = 90_000): Promise<TrainStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: TrainStatus | undefined;
  while (Date.now() < deadline) {
    last = await h.client.workflow
      .getHandle(id)
      .query(trainStatusQuery)
      .catch(() => last);
    if (last && pred(last)) return last;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(
    `timed out waiting for ${what}; last: ${JSON.stringify(last && { state: last.state, detail: last.detail, members: last.members })}`,
  );
}

async function waitForMember(service: string, pred: (s: RolloutStatus) => boolean): Promise<RolloutStatus> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = await memberStatus(service);
    if (pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${service}: ${s.detail}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

async function memberStatus(service: string): Promise<RolloutStatus> {
  return h.client.workflow.getHandle(`rollout-${service}`).query(statusQuery);
}

test('dependency order and parallel branches: a member starts only once what it depends on is promoted; independent ones overlap', async () => {
  const orders = single('tr-orders', fn('tr-orders', 'use1'));
  const checkout = single('tr-checkout', cloudRunTarget('crun', 'tr-checkout', 'europe-west1'), '2 seconds');
  const search = single('tr-search', fn('tr-search', 'use1'), '2 seconds');
  const web = single('tr-web', fn('tr-web', 'use1'));
  const specs = [orders, checkout, search, web];
  for (const s of specs) await createFunctions(h, s);
  seedCloudRun(h, checkout);
  const lambda = recordLambdaWrites();
  const crun = sampleCloudRun([checkout.targets[0] as CloudRunTargetSpec]);
  const sim = traffic(specs);
  try {
    const t = train('spring-sale-r7', [
      { spec: web, depends_on: ['tr-checkout', 'tr-search'] },
      { spec: orders },
      { spec: checkout, depends_on: ['tr-orders'] },
      { spec: search, depends_on: ['tr-orders'] },
    ]);
    const handle = await startTrain(h.client, t, { startedBy: 'carol', taskQueue: h.taskQueue });
    expect(handle.workflowId).toBe('train-spring-sale-r7');
    // While the train runs, a promoted member announces that it is held.
    await waitForTrain(handle.workflowId, (s) => s.members.find((m) => m.service === 'tr-orders')!.state === 'held', 'orders held');
    expect((await memberStatus('tr-orders')).detail).toMatch(/^promoted, held by train spring-sale-r7/);
    // A forged release (no train nonce) is refused: the member stays held, its alias untouched since promote.
    await h.client.workflow.getHandle('rollout-tr-orders').signal(trainDecisionSignal, { decision: 'release' });
    const forged = await waitForMember('tr-orders', (s) => s.history.some((e) => /refused a trainDecision release/.test(e.text)));
    expect(forged.train).toEqual({ id: 'train-spring-sale-r7', name: 'spring-sale-r7', held: true });
    expect(forged.state).toBe('running');
    const res = (await handle.result()) as TrainResult;
    expect(res.state).toBe('succeeded');
    expect(res.status.order).toEqual(['tr-orders', 'tr-checkout', 'tr-search', 'tr-web']);
    expect(res.status.members.map((m) => m.state)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);

    // From the emulators: checkout (Cloud Run) and search (Lambda) deploy only after orders' alias is on version 2 ...
    const ordersPromoted = lambda.routedAllAt('tr-orders-use1', '2')!;
    const checkoutDeployed = crun.deployedAt('tr-checkout')!;
    const searchDeployed = lambda.deployedAt('tr-search-use1')!;
    const checkoutPromoted = crun.servedAllAt('tr-checkout', 'tr-checkout-r2')!;
    const searchPromoted = lambda.routedAllAt('tr-search-use1', '2')!;
    expect(ordersPromoted).toBeDefined();
    expect(checkoutDeployed).toBeGreaterThan(ordersPromoted);
    expect(searchDeployed).toBeGreaterThan(ordersPromoted);
    // ... in parallel (each deployed before the other was promoted) ...
    expect(searchDeployed).toBeLessThan(checkoutPromoted);
    expect(checkoutDeployed).toBeLessThan(searchPromoted);
    // ... and web only after both of them.
    expect(lambda.deployedAt('tr-web-use1')).toBeGreaterThan(Math.max(checkoutPromoted, searchPromoted));
    for (const s of [orders, search, web]) expect(await aliasState(h.motoUrl, s.targets[0])).toEqual({ version: '2', weights: {} });
    expect(cloudRunState(h, checkout.targets[0]).split).toEqual({ 'tr-checkout-r2': 100 });

    // Parent/child links and search attributes, as the Temporal UI and `list` show them.
    const member = await h.client.workflow.getHandle('rollout-tr-search').describe();
    expect(member.parentExecution?.workflowId).toBe('train-spring-sale-r7');
    expect(member.typedSearchAttributes.get(SA.train)).toBe('spring-sale-r7');
    let listed: string[] = [];
    for (let i = 0; i < 50 && listed.length < 5; i++) {
      listed = [];
      for await (const wf of h.client.workflow.list({ query: `RolloutTrain = 'spring-sale-r7'` })) listed.push(wf.workflowId);
      if (listed.length < 5) await new Promise((r) => setTimeout(r, 200));
    }
    expect(listed.sort()).toEqual([
      'rollout-tr-checkout',
      'rollout-tr-orders',
      'rollout-tr-search',
      'rollout-tr-web',
      'train-spring-sale-r7',
    ]);
    const view = await getTrainView(h.client, 'train-spring-sale-r7');
    expect(Object.keys(view.members).sort()).toEqual(['tr-checkout', 'tr-orders', 'tr-search', 'tr-web']);
    // The CLI: `status NAME` shows the train and its members, `list` shows members with their train.
    const st = await cli('status', 'spring-sale-r7');
    expect(st.code).toBe(0);
    expect(st.out).toContain('train-spring-sale-r7  train spring-sale-r7  state=succeeded');
    expect(st.out).toContain('order: tr-orders -> tr-checkout -> tr-search -> tr-web');
    expect(st.out).toMatch(/tr-web r2 after tr-checkout, tr-search: succeeded \(rollout-tr-web: stage done/);
    // Visibility lags: list until the members' final search attributes show. The dev server is shared
    // with the files running beside this one, so the default 50 newest rows may all be theirs.
    const list = () => cli('list', '--limit', '5000');
    let ls = await list();
    for (let i = 0; i < 50 && !/^train-spring-sale-r7 .* succeeded /m.test(ls.out); i++) {
      await new Promise((r) => setTimeout(r, 200));
      ls = await list();
    }
    expect(ls.out).toMatch(/^rollout-tr-checkout {2}r2 {2}succeeded {2}done {2}train spring-sale-r7/m);
    expect(ls.out).toMatch(/^train-spring-sale-r7 {2}spring-sale-r7 {2}succeeded {2}train {2}train spring-sale-r7/m);
    await recordHistory(handle, 'train-v1-release');
    await recordHistory(h.client.workflow.getHandle('rollout-tr-orders'), 'rollout-v2-train-member-held-release');
  } finally {
    sim.stop();
    crun.stop();
  }
});

test('lockstep: every member at the canary, then every member at wave 1, however long one member bakes', async () => {
  const member = (service: string, canaryBake: string) =>
    mixedSpec(h, service, [fn(service, 'c'), fn(service, 'w', 'eu-west-1')], {
      canary: { targets: ['c'], weight: 10, bake: canaryBake },
      waves: [{ name: 'wave-1', targets: ['w'], steps: [100], bake: '1 second' }],
    });
  const specs = [member('ls-a', '1 second'), member('ls-b', '3 seconds'), member('ls-c', '1 second')];
  for (const s of specs) await createFunctions(h, s);
  const lambda = recordLambdaWrites();
  const sim = traffic(specs);
  try {
    const handle = await startTrain(
      h.client,
      train('lockstep-r1', [{ spec: specs[0] }, { spec: specs[1], depends_on: ['ls-a'] }, { spec: specs[2] }], true),
      {
        startedBy: 'carol',
        taskQueue: h.taskQueue,
      },
    );
    const res = (await handle.result()) as TrainResult;
    expect(res.state).toBe('succeeded');
    const canaries = specs.map((s) => lambda.firstShiftAt(`${s.service}-c`)!);
    const waves = specs.map((s) => lambda.firstForwardAt(`${s.service}-w`)!);
    // No member's wave began before every canary had moved ...
    expect(Math.min(...waves)).toBeGreaterThan(Math.max(...canaries));
    // ... nor before b's 3 s canary bake was over: a and c (1 s bakes) waited for it.
    for (const w of waves) expect(w - canaries[1]).toBeGreaterThanOrEqual(2900);
    for (const s of specs) for (const t of s.targets) expect(await aliasState(h.motoUrl, t)).toEqual({ version: '2', weights: {} });
    await recordHistory(handle, 'train-v1-lockstep');
    await recordHistory(h.client.workflow.getHandle('rollout-ls-a'), 'rollout-v2-train-member-lockstep');
  } finally {
    sim.stop();
  }
});

test('a breach in the middle member stops the train: the others are reverted dependents first, one alert names the member, the train pauses', async () => {
  const orders = single('tb-orders', fn('tb-orders', 'use1'));
  const search = single('tb-search', fn('tb-search', 'use1'));
  const checkout = single('tb-checkout', cloudRunTarget('crun-checkout', 'tb-checkout', 'europe-west1'), '2 seconds');
  const web = single('tb-web', cloudRunTarget('crun-web', 'tb-web', 'europe-west1'));
  const specs = [orders, search, checkout, web];
  for (const s of specs) await createFunctions(h, s);
  const first = { ...seedCloudRun(h, checkout), ...seedCloudRun(h, web) };
  const crunTargets = [checkout.targets[0], web.targets[0]] as CloudRunTargetSpec[];
  const lambda = recordLambdaWrites();
  const crun = sampleCloudRun(crunTargets);
  const alertsBefore = h.webhook.received.length;
  // checkout's new revision answers 30 % errors: its canary analysis breaches.
  const sim = traffic(specs, 'tb-checkout-r2');
  try {
    const handle = await startTrain(
      h.client,
      train('breach-r1', [
        { spec: orders },
        { spec: search, depends_on: ['tb-orders'] },
        { spec: checkout, depends_on: ['tb-orders'] },
        { spec: web, depends_on: ['tb-checkout'] },
      ]),
      { startedBy: 'carol', taskQueue: h.taskQueue },
    );
    const paused = await waitForTrain(handle.workflowId, (s) => s.pausedAfterRollback, 'train paused after the breach');
    // Final state in both emulators: every touched target back on its stable version, web never touched.
    for (const s of [orders, search]) expect(await aliasState(h.motoUrl, s.targets[0])).toEqual({ version: '1', weights: {} });
    expect(cloudRunState(h, checkout.targets[0]).split).toEqual({ [first['crun-checkout']]: 100 });
    expect(cloudRunState(h, web.targets[0]).revisions).toEqual([first['crun-web']]);
    // The revert order, read from the emulators: checkout (the breach, at once), then search, then orders.
    const checkoutBack = crun.lastBackOnAt('tb-checkout', first['crun-checkout'])!;
    const searchBack = lambda.lastRevertAt('tb-search-use1')!;
    const ordersBack = lambda.lastRevertAt('tb-orders-use1')!;
    expect(lambda.routedAllAt('tb-orders-use1', '2')).toBeLessThan(ordersBack); // orders had been promoted
    expect(checkoutBack).toBeLessThan(searchBack);
    expect(searchBack).toBeLessThan(ordersBack);

    // What the train itself reports.
    expect(paused.state).toBe('paused');
    expect(paused.stoppedBy).toBe('tb-checkout');
    expect(paused.reason).toMatch(/^member tb-checkout \(r2\) rolled-back: .*error rate/);
    expect(paused.reverted).toEqual(['tb-search', 'tb-orders']);
    expect(Object.fromEntries(paused.members.map((m) => [m.service, m.state]))).toEqual({
      'tb-orders': 'rolled-back', // promoted and held: reverted by the train's decision
      // Held (rolled-back) or still baking when checkout breached (stopped like an abort).
      'tb-search': expect.stringMatching(/^(aborted|rolled-back)$/),
      'tb-checkout': 'rolled-back',
      'tb-web': 'not-started',
    });

    // One alert, from the train, naming the member that breached; the members sent none of their own.
    const deadline = Date.now() + 20_000;
    const trainAlerts = () => h.webhook.received.slice(alertsBefore).filter((r) => r.body?.rollgate?.event === 'train-rolled-back');
    while (trainAlerts().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 1000));
    const received = h.webhook.received.slice(alertsBefore);
    expect(received.map((r) => r.body.rollgate.event)).toEqual(['train-rolled-back']);
    expect(received[0].body.rollgate).toMatchObject({ rolloutId: 'train-breach-r1', service: 'tb-checkout', state: 'paused' });
    expect(received[0].body.text).toMatch(
      /^rollgate: train breach-r1 stopped by tb-checkout: [\s\S]* Reverted \(dependents first\): tb-search, tb-orders\./,
    );

    // `abort` closes the paused train.
    await h.client.workflow.getHandle(handle.workflowId).signal('abort', { by: 'carol' });
    expect(((await handle.result()) as TrainResult).state).toBe('rolled-back');
    await recordHistory(handle, 'train-v1-breach-pause-abort');
    await recordHistory(h.client.workflow.getHandle('rollout-tb-checkout'), 'rollout-v2-train-member-breach');
    await recordHistory(h.client.workflow.getHandle('rollout-tb-orders'), 'rollout-v2-train-member-held-revert');
  } finally {
    sim.stop();
    crun.stop();
  }
});

test('a cycle is refused by validate and start, named in order, before anything starts', async () => {
  const spec = (service: string) => {
    const s = single(service, fn(service, 'use1'));
    return { ...s, notify: undefined };
  };
  writeFileSync(join(h.workDir, 'cy-orders.yaml'), stringify(spec('cy-orders')));
  writeFileSync(join(h.workDir, 'cy-checkout.yaml'), stringify(spec('cy-checkout')));
  const file = join(h.workDir, 'cycle-train.yaml');
  writeFileSync(
    file,
    stringify({
      train: 'cycle-r1',
      services: [
        { spec: 'cy-orders.yaml', depends_on: ['cy-checkout'] },
        { spec: 'cy-checkout.yaml', depends_on: ['cy-orders'] },
      ],
    }),
  );
  for (const cmd of ['validate', 'start']) {
    const r = await cli(cmd, file);
    expect(r.code).toBe(2);
    expect(r.err).toContain('services: dependency cycle: cy-orders -> cy-checkout -> cy-orders');
  }
  await expect(h.client.workflow.getHandle('train-cycle-r1').describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
  await expect(h.client.workflow.getHandle('rollout-cy-orders').describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
  // Without the cycle the same files validate, in release order.
  writeFileSync(
    file,
    stringify({ train: 'cycle-r1', services: [{ spec: 'cy-orders.yaml', depends_on: ['cy-checkout'] }, { spec: 'cy-checkout.yaml' }] }),
  );
  const ok = await cli('validate', file);
  expect(ok.code).toBe(0);
  expect(ok.out).toContain('ok, train cycle-r1: cy-checkout -> cy-orders');
});

test('the worker is SIGKILLed mid-train: a new worker process finishes it, one version published per target', async () => {
  const orders = single('tk-orders', fn('tk-orders', 'use1'));
  const web = single('tk-web', fn('tk-web', 'use1'), '3 seconds');
  for (const s of [orders, web]) await createFunctions(h, s);
  const sim = traffic([orders, web]);
  const env = {
    ROLLGATE_TEST_TEMPORAL: process.env.ROLLGATE_TEST_TEMPORAL!,
    ROLLGATE_TASK_QUEUE: h.taskQueue,
    ROLLGATE_LAMBDA_ENDPOINT: h.proxy.url,
    ROLLGATE_STATE_DIR: h.workDir,
  };
  await h.stopWorker();
  try {
    child = await startChildWorker(env);
    const handle = await startTrain(h.client, train('crash-r1', [{ spec: orders }, { spec: web, depends_on: ['tk-orders'] }]), {
      startedBy: 'carol',
      taskQueue: h.taskQueue,
    });
    // Orders promoted and held, web baking its canary: the worker dies with both open.
    await waitForTrain(
      handle.workflowId,
      (s) => s.members[0].state === 'held' && s.members[1].state === 'running',
      'orders held, web running',
    );
    const deadline = Date.now() + 60_000;
    while (!/baking/.test((await memberStatus('tk-web').catch(() => undefined))?.detail ?? '') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    await sigkill(child);
    child = await startChildWorker(env);
    const res = (await handle.result()) as TrainResult;
    expect(res.state).toBe('succeeded');
    for (const s of [orders, web]) {
      expect(await publishedVersions(h.motoUrl, s.targets[0])).toEqual(['1', '2']);
      expect(await aliasState(h.motoUrl, s.targets[0])).toEqual({ version: '2', weights: {} });
    }
  } finally {
    sim.stop();
    await h.startWorker();
  }
});

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((err += String(s)), true));
  process.exitCode = undefined;
  try {
    return { code: await main(args), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
    process.exitCode = undefined;
  }
}
