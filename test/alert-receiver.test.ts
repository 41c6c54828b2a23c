/**
 * Alert to revert, end to end: a real Alertmanager (Debian's prometheus-alertmanager) posts its
 * webhook to the receiver, and CloudWatch alarm notifications arrive as SNS would deliver them
 * (signed with the test certificate, which a loopback HTTPS host serves at SigningCertURL). The
 * rollout runs on the real dev server with Lambda targets in moto and a Cloud Run target in the
 * fake; "reverted" is read from moto's aliases and the fake's served split.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { startRollout } from '../src/client';
import { startAlertReceiver, type AlertReceiver } from '../src/alerts/receiver';
import { startAlertmanager, type AlertmanagerServer } from '../src/dev/alertmanager';
import type { WorkflowHandle } from '@temporalio/client';
import { abortSignal, type RolloutResult, type RolloutStatus } from '../src/contract';
import type { RolloutSpec } from '../src/spec/schema';
import { aliasState } from './support/lambda';
import { cloudRunState, cloudRunTarget, lambdaTarget, mixedSpec, seedCloudRun } from './support/cloud-run';
import { createFunctions, createHarness, waitForStatus, type Harness } from './support/harness';
import { lambdaAlarm, startFakeSns, type FakeSns } from './support/sns';

const TOKEN = 'test-alert-token-0123456789';
let h: Harness;
let sns: FakeSns;
let receiver: AlertReceiver;
let am: AlertmanagerServer | undefined;
const logs: { level: string; message: string; service?: unknown }[] = [];

beforeAll(async () => {
  h = await createHarness('alerts', { cloudRun: true });
  await h.startWorker();
  sns = await startFakeSns();
  receiver = await startAlertReceiver(h.client, { port: 0, host: '127.0.0.1', token: TOKEN, sns: sns.options() }, (level, message, meta) =>
    logs.push({ level, message, service: meta.service }),
  );
});
afterAll(async () => {
  await am?.stop();
  await receiver?.close();
  await sns?.close();
  await h?.close();
});

/** A rollout baking for an hour in its wave with traffic on the new version everywhere: only a breach ends it soon. */
async function midWave(service: string, withCloudRun: boolean) {
  const targets = [
    lambdaTarget(service, 'us-east-1'),
    lambdaTarget(service, 'eu-west-1'),
    ...(withCloudRun ? [cloudRunTarget('cr-eu', service, 'europe-west1')] : []),
  ];
  const spec = mixedSpec(
    h,
    service,
    targets,
    {
      canary: { targets: ['us-east-1'], weight: 10, bake: '1 second' },
      waves: [{ name: 'wave-1', targets: targets.slice(1).map((t) => t.name), steps: [50, 100], bake: '1 hour' }],
    },
    { rollback: { min_requests: 0, on_no_data: 'pass' } },
  );
  await createFunctions(h, spec);
  const first = seedCloudRun(h, spec);
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: h.taskQueue });
  await waitForStatus(
    handle,
    (s) => s.stage === 'wave:wave-1' && !!s.bakeEndsAtMs && s.targets.every((t) => t.weight > 0),
    90_000,
    'mid-wave bake',
  );
  return { spec, handle, first };
}

/** Every target serves the new version in part: nothing was reverted. */
async function expectNewTraffic(spec: RolloutSpec, first: Record<string, string>) {
  for (const t of spec.targets) {
    if (t.provider === 'aws-lambda') {
      const a = await aliasState(h.motoUrl, t);
      expect(a.version !== '1' || Object.keys(a.weights).length > 0).toBe(true);
    } else expect(cloudRunState(h, t).split[first[t.name]] ?? 0).toBeLessThan(100);
  }
}

/** Every target back on its first version in moto and the fake. */
async function expectReverted(spec: RolloutSpec, first: Record<string, string>) {
  for (const t of spec.targets)
    if (t.provider === 'aws-lambda') expect(await aliasState(h.motoUrl, t)).toEqual({ version: '1', weights: {} });
    else expect(cloudRunState(h, t).split).toEqual({ [first[t.name]]: 100 });
}

async function until(what: string, pred: () => boolean, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${what}; receiver log: ${JSON.stringify(logs.slice(-5))}; alertmanager: ${am?.log.slice(-500)}`,
      );
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** As SNS delivers: a 5xx answer is delivered again (its default policy retries for minutes; here 3 tries). */
async function postAsSns(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  let res = await post('/sns', body, headers);
  for (let i = 0; i < 2 && res.status >= 500; i++) {
    await new Promise((r) => setTimeout(r, 500));
    res = await post('/sns', body, headers);
  }
  return res;
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${receiver.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

const history = (s: RolloutStatus) => s.history.map((e) => e.text).join('\n');

/** Paused after the revert: an abort closes it as rolled back. */
async function expectClosedRolledBack(handle: WorkflowHandle): Promise<void> {
  await handle.signal(abortSignal, { by: 'test' });
  expect(((await handle.result()) as RolloutResult).state).toBe('rolled-back');
}

/** Cleanup after a failed assertion: a run still open is aborted, so the next test starts clean. */
async function abortIfOpen(handle: WorkflowHandle): Promise<void> {
  if ((await handle.describe()).status.name !== 'RUNNING') return;
  await handle.signal(abortSignal, { by: 'test' });
  await handle.result().catch(() => undefined);
}

test('Alertmanager: a firing alert for the running release reverts Lambda and Cloud Run; no token, wrong token and a stale release do not', async () => {
  const service = 'alam';
  const { spec, handle, first } = await midWave(service, true);
  try {
    // Not an open endpoint: without the bearer token nothing is read or sent.
    const body = { version: '4', status: 'firing', alerts: [{ status: 'firing', labels: { alertname: 'X', service, release: 'r2' } }] };
    expect((await post('/alertmanager', body)).status).toBe(401);
    expect((await post('/alertmanager', body, { authorization: 'Bearer not-the-token-at-all' })).status).toBe(401);

    // The same payload with the token, but about release r1: refused with 409, nothing sent.
    const stale = { ...body, alerts: [{ status: 'firing', labels: { alertname: 'X', service, release: 'r1' } }] };
    const refused = await post('/alertmanager', stale, { authorization: `Bearer ${TOKEN}` });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as any).outcomes).toMatchObject([
      { outcome: 'refused', detail: expect.stringMatching(/release r1.*runs r2/) },
    ]);

    am = await startAlertmanager({ webhookUrl: `${receiver.url}/alertmanager`, bearerToken: TOKEN });
    // An alert about the previous release: refused (409 to Alertmanager), the rollout keeps baking.
    await am.push([{ labels: { alertname: 'OldReleaseErrors', service, release: 'r1' }, annotations: { summary: 'errors on r1' } }]);
    await until('the stale alert refused', () => logs.some((l) => l.message.includes('OldReleaseErrors refused') && l.service === service));
    await new Promise((r) => setTimeout(r, 1_000)); // a wrongly delivered verdict would have landed by now
    let s = await waitForStatus(handle, () => true);
    expect(s.state).toBe('running');
    expect(history(s)).not.toMatch(/external fail/);
    await expectNewTraffic(spec, first);

    const sent = Date.now();
    await am.push([{ labels: { alertname: 'HighErrorRate', service, release: 'r2' }, annotations: { summary: 'error rate 9 % > 2 %' } }]);
    s = await waitForStatus(handle, (x) => !!x.pausedAfterRollback, 60_000, 'reverted and paused');
    await expectReverted(spec, first);
    expect(history(s)).toMatch(/external fail: Alertmanager: HighErrorRate: error rate 9 % > 2 %/);
    expect(s.rollbackReason).toMatch(/Alertmanager: HighErrorRate/);
    expect(Date.now() - sent).toBeLessThan(60_000);
    await expectClosedRolledBack(handle);
  } finally {
    await abortIfOpen(handle);
  }
});

test('CloudWatch via SNS: subscription confirmed on an SNS host only; forged, tampered and foreign-topic messages refused; a signed ALARM on the Lambda function reverts', async () => {
  const service = 'alsns';
  const { spec, handle, first } = await midWave(service, false);
  try {
    const conf = sns.sign({
      Type: 'SubscriptionConfirmation',
      Message: 'You have chosen to subscribe',
      Token: 'tok-1',
      SubscribeURL: `${sns.base}/confirm?Action=ConfirmSubscription&Token=tok-1`,
    });
    const confirmed = await postAsSns(conf);
    expect(`${confirmed.status} ${await confirmed.text()}`).toMatch(/^200 /); // the body says why when it is not
    expect(sns.confirmations).toEqual(['/confirm?Action=ConfirmSubscription&Token=tok-1']);
    const elsewhere = sns.sign({
      Type: 'SubscriptionConfirmation',
      Message: 'x',
      Token: 'tok-2',
      SubscribeURL: 'https://attacker.example/confirm?Token=tok-2',
    });
    expect((await post('/sns', elsewhere)).status).toBe(403);
    expect(sns.confirmations).toHaveLength(1);

    const alarm = lambdaAlarm({ name: 'alsns-errors', fn: `${service}-fn`, alias: 'live', region: 'eu-west-1' });
    const forged = { ...sns.alarm(alarm), Signature: Buffer.from('forged').toString('base64') };
    const tampered = sns.alarm({ ...alarm, NewStateValue: 'OK' });
    tampered.Message = JSON.stringify(alarm); // ALARM in place of the signed OK
    const otherTopic = sns.sign({
      Type: 'Notification',
      Message: JSON.stringify(alarm),
      TopicArn: 'arn:aws:sns:us-east-1:123456789012:someone-else',
    });
    for (const m of [forged, tampered, otherTopic]) expect((await post('/sns', m)).status).toBe(403);
    // An OK state change is acknowledged and ignored.
    const ok = await post('/sns', sns.alarm({ ...alarm, NewStateValue: 'OK' }, '1'));
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as any).outcomes).toMatchObject([{ outcome: 'ignored' }]);
    let s = await waitForStatus(handle, () => true);
    expect(s.state).toBe('running');
    expect(history(s)).not.toMatch(/external fail/);
    await expectNewTraffic(spec, first);

    // Signed (SignatureVersion 1, SHA1) ALARM on Lambda's Errors metric of the function: found by its target.
    const res = await postAsSns(sns.alarm(alarm, '1'), { 'content-type': 'text/plain; charset=UTF-8' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).outcomes).toMatchObject([{ outcome: 'reverting', service, release: 'r2' }]);
    s = await waitForStatus(handle, (x) => !!x.pausedAfterRollback, 60_000, 'reverted and paused');
    await expectReverted(spec, first);
    expect(history(s)).toMatch(/external fail: CloudWatch alarm: alsns-errors: Threshold Crossed/);
    await expectClosedRolledBack(handle);
  } finally {
    await abortIfOpen(handle);
  }
});

test('CloudWatch via SNS: an alarm whose open Lambda rollout cannot be asked for its status is answered 503 (SNS delivers it again), not acknowledged as about no rollout (Alertmanager alike); an alarm on another function is answered', async () => {
  const service = 'alnoans';
  // Started on a queue no worker polls: visible as running, but its status query cannot be answered.
  const spec = mixedSpec(h, service, [lambdaTarget(service, 'eu-west-1')], {
    canary: { targets: ['eu-west-1'], weight: 10, bake: '1 second' },
    waves: [],
  });
  const handle = await startRollout(h.client, spec, { startedBy: 'carol', taskQueue: `${h.taskQueue}-nobody-polls` });
  try {
    const listed = `WorkflowId = '${handle.workflowId}' AND ExecutionStatus = 'Running' AND RolloutProviders = 'aws-lambda'`;
    for (const end = Date.now() + 30_000; (await h.client.workflow.count(listed)).count === 0;) {
      if (Date.now() > end) throw new Error('the rollout was never listed by visibility');
      await new Promise((r) => setTimeout(r, 200));
    }
    // An alarm on another function is not held back by it: its spec is read from its start event.
    const elsewhere = lambdaAlarm({ name: 'alnoans-other-errors', fn: `${service}-other-fn`, alias: 'live', region: 'eu-west-1' });
    const other = await post('/sns', sns.alarm(elsewhere, '1'));
    expect(`${other.status} ${await other.text()}`).toMatch(/^200 .*"outcome":"ignored"/);
    const alarm = lambdaAlarm({ name: 'alnoans-errors', fn: `${service}-fn`, alias: 'live', region: 'eu-west-1' });
    const t0 = Date.now();
    const res = await post('/sns', sns.alarm(alarm, '1'));
    expect(res.status).toBe(503);
    expect(((await res.json()) as any).error).toMatch(new RegExp(`status of ${handle.workflowId} could not be read`));
    expect(Date.now() - t0).toBeLessThan(15_000); // bounded by the lookup's deadline, not the SDK's
    // The same for an Alertmanager alert naming the service: 503 (Alertmanager sends it again), in bounded time.
    const t1 = Date.now();
    const am503 = await post(
      '/alertmanager',
      { version: '4', status: 'firing', alerts: [{ status: 'firing', labels: { alertname: 'X', service, release: 'r2' } }] },
      { authorization: `Bearer ${TOKEN}` },
    );
    expect(`${am503.status} ${await am503.text()}`).toMatch(new RegExp(`^503 .*status of ${handle.workflowId} could not be read`));
    expect(Date.now() - t1).toBeLessThan(15_000);
  } finally {
    await handle.terminate('test cleanup').catch(() => undefined);
  }
});

test('rollgate alert-receiver runs alone from its environment: token required, an alert for a service without a rollout is acknowledged', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', "require('./src/cli/main').main(['alert-receiver'])"], {
    cwd: join(__dirname, '..'),
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: process.env.ROLLGATE_TEST_TEMPORAL!,
      ROLLGATE_ALERT_RECEIVER_PORT: '0',
      ROLLGATE_ALERT_TOKEN: TOKEN,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    let err = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`alert-receiver did not start: ${err}`)), 60_000);
      child.stderr!.on('data', (b: Buffer) => {
        err += b;
        const m = /listening on (http:\/\/\S+)/.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.once('exit', (code) => reject(new Error(`alert-receiver exited ${code}: ${err}`)));
    });
    const body = { version: '4', alerts: [{ status: 'firing', labels: { alertname: 'X', service: 'nothing-here' } }] };
    const send = (headers: Record<string, string>) =>
      fetch(`${url}/alertmanager`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
    expect((await send({})).status).toBe(401);
    const r = await send({ authorization: `Bearer ${TOKEN}` });
    expect(r.status).toBe(200);
    expect(((await r.json()) as any).outcomes).toMatchObject([{ outcome: 'ignored', detail: 'no open rollout of nothing-here' }]);
    expect((await fetch(`${url}/sns`, { method: 'POST', body: '{}' })).status).toBe(404); // no topics: SNS is off
  } finally {
    await new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  }
});
