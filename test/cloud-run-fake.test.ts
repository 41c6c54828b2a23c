/** The Cloud Run Admin API fake, driven only through the real @google-cloud/run client over gRPC. */
import { RevisionsClient, ServicesClient } from '@google-cloud/run';
import { Status } from 'google-gax';
import { CloudRunFake } from '../src/dev/cloud-run-fake';
import { gcpClientOptions } from '../src/providers/gcp-client';

process.env.METADATA_SERVER_DETECTION = 'none';

const IMG_A = `europe-docker.pkg.dev/demo-project/app/orders@sha256:${'a'.repeat(64)}`;
const IMG_B = `europe-docker.pkg.dev/demo-project/app/orders@sha256:${'b'.repeat(64)}`;
const REV = 'TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION' as const;
const P = 'demo-project';
const R = 'europe-west1';

let fake: CloudRunFake;
let services: ServicesClient;
let revisions: RevisionsClient;

beforeAll(async () => {
  fake = await new CloudRunFake().start();
  services = new ServicesClient(gcpClientOptions(fake.address));
  revisions = new RevisionsClient(gcpClientOptions(fake.address));
});
afterAll(async () => {
  await services?.close();
  await revisions?.close();
  await fake?.stop();
});
beforeEach(() => {
  fake.knobs.operationPolls = 1;
  fake.knobs.operationMaxMs = 2_000;
  fake.knobs.neverReady = () => false;
  fake.knobs.unhealthy = () => false;
});

const svcName = (s: string) => `projects/${P}/locations/${R}/services/${s}`;
const short = (full: string | null | undefined) => (full ?? '').split('/').pop()!;

function seed(service: string) {
  fake.seedService({ project: P, region: R, service, image: IMG_A, env: { LOG_LEVEL: 'info', RELEASE_ID: 'r1' } });
  return svcName(service);
}

async function getService(name: string) {
  return (await services.getService({ name }))[0];
}

/** A deploy the way rollgate does it: explicit name, new image, 100 % kept on the old revision, tag at 0 %. */
async function deployRequest(name: string, revision: string, image = IMG_B, env: Record<string, string> = { RELEASE_ID: 'r2' }) {
  const svc = await getService(name);
  const template = JSON.parse(JSON.stringify(svc.template));
  template.revision = revision;
  template.containers[0].image = image;
  template.containers[0].env = [
    ...template.containers[0].env.filter((e: any) => !(e.name in env)),
    ...Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
  ];
  const old = short(svc.latestReadyRevision);
  return {
    svc,
    old,
    request: {
      service: {
        ...svc,
        template,
        traffic: [
          { type: REV, revision: old, percent: 100 },
          { type: REV, revision, percent: 0, tag: 'canary' },
        ],
      },
    },
  };
}

async function expectCode(p: Promise<unknown>, code: Status, message?: RegExp) {
  const err = (await p.then(
    () => undefined,
    (e: unknown) => e,
  )) as { code?: number; message?: string } | undefined;
  expect(err).toBeDefined();
  expect(Status[err!.code!]).toBe(Status[code]);
  if (message) expect(err!.message).toMatch(message);
}

test('a seeded service serves 100 % LATEST from one ready revision named SERVICE-00001-xxx', async () => {
  const name = seed('seeded');
  const svc = await getService(name);
  expect(svc.traffic).toEqual([expect.objectContaining({ type: 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST', percent: 100 })]);
  expect(short(svc.latestReadyRevision)).toMatch(/^seeded-00001-[a-f0-9]{3}$/);
  expect(svc.latestCreatedRevision).toBe(svc.latestReadyRevision);
  expect(svc.reconciling).toBe(false);
  expect(svc.trafficStatuses).toHaveLength(1);
  expect(svc.uri).toMatch(/^https:\/\/seeded-[a-f0-9]{10}\.a\.run\.app$/);
  const [revs] = await revisions.listRevisions({ parent: name });
  expect(revs.map((r) => short(r.name))).toEqual([short(svc.latestReadyRevision)]);
  expect(revs[0].conditions!.find((c) => c.type === 'Ready')!.state).toBe('CONDITION_SUCCEEDED');
});

test('an explicit revision at 0 % with a tag: spec changes at once, status when the operation completes after N polls', async () => {
  fake.knobs.operationPolls = 3;
  const name = seed('zero');
  const { request, old, svc: before } = await deployRequest(name, 'zero-r2');
  const polls0 = fake.callCount('GetOperation');
  const [op] = await services.updateService(request);
  expect(op.done).toBeFalsy();

  const mid = await getService(name);
  expect(mid.reconciling).toBe(true);
  expect(Number(mid.generation)).toBe(Number(before.generation) + 1);
  expect(short(mid.latestCreatedRevision)).toBe('zero-r2');
  expect(mid.latestReadyRevision).toBe(before.latestReadyRevision);
  expect(mid.trafficStatuses).toEqual(before.trafficStatuses); // nothing served differently yet
  const [pendingRev] = await revisions.getRevision({ name: `${name}/revisions/zero-r2` });
  expect(pendingRev.conditions!.find((c) => c.type === 'Ready')!.state).toBe('CONDITION_RECONCILING');

  await op.promise();
  expect(fake.callCount('GetOperation') - polls0).toBe(3);
  const after = await getService(name);
  expect(after.reconciling).toBe(false);
  expect(after.observedGeneration).toBe(after.generation);
  expect(short(after.latestReadyRevision)).toBe('zero-r2');
  expect(after.trafficStatuses!.map((s) => [s.revision, s.percent, s.tag])).toEqual([
    [old, 100, ''],
    ['zero-r2', 0, 'canary'],
  ]);
  expect(after.trafficStatuses![1].uri).toMatch(/^https:\/\/canary---zero-[a-f0-9]{10}\.a\.run\.app$/);
  expect(fake.servedSplit(P, R, 'zero')).toEqual({ [old]: 100 });
});

test('revision names: same name + same template creates nothing, same name + other template is ALREADY_EXISTS, bad names INVALID_ARGUMENT', async () => {
  const name = seed('names');
  const first = await deployRequest(name, 'names-r2');
  await (await services.updateService(first.request))[0].promise();
  expect(fake.revisionNames(P, R, 'names')).toHaveLength(2);

  const again = await deployRequest(name, 'names-r2'); // identical template, same explicit name
  await (await services.updateService(again.request))[0].promise();
  expect(fake.revisionNames(P, R, 'names')).toHaveLength(2);

  const other = await deployRequest(name, 'names-r2', IMG_A, { RELEASE_ID: 'r3' });
  await expectCode(services.updateService(other.request), Status.ALREADY_EXISTS, /names-r2.*different configuration/);
  const wrongPrefix = await deployRequest(name, 'other-r2');
  await expectCode(services.updateService(wrongPrefix.request), Status.INVALID_ARGUMENT, /must start with the service name/);
  expect(fake.revisionNames(P, R, 'names')).toHaveLength(2);
});

test('traffic validation: percents must sum to 100, revisions must exist, tags unique', async () => {
  const name = seed('valid');
  const svc = await getService(name);
  const old = short(svc.latestReadyRevision);
  const withTraffic = (traffic: object[]) => services.updateService({ service: { ...svc, traffic } });
  await expectCode(withTraffic([{ type: REV, revision: old, percent: 90 }]), Status.INVALID_ARGUMENT, /add up to 100, got 90/);
  await expectCode(
    withTraffic([
      { type: REV, revision: old, percent: 50 },
      { type: REV, revision: 'valid-nope', percent: 50 },
    ]),
    Status.INVALID_ARGUMENT,
    /valid-nope.*not found/,
  );
  await expectCode(
    withTraffic([
      { type: REV, revision: old, percent: 100, tag: 'a' },
      { type: REV, revision: old, percent: 0, tag: 'a' },
    ]),
    Status.INVALID_ARGUMENT,
    /tag "a" is used twice/,
  );
  const after = await getService(name);
  expect(after.generation).toBe(svc.generation); // rejected updates change nothing
});

test('a revision that never becomes ready: the operation fails, the revision is FAILED, traffic stays, routing to it is refused', async () => {
  fake.knobs.neverReady = (r) => r.env.RELEASE_ID === 'broken';
  const name = seed('never');
  const { request, old } = await deployRequest(name, 'never-broken', IMG_B, { RELEASE_ID: 'broken' });
  const [op] = await services.updateService(request);
  await expectCode(op.promise(), Status.FAILED_PRECONDITION, /never-broken.*not ready/);
  const [rev] = await revisions.getRevision({ name: `${name}/revisions/never-broken` });
  expect(rev.conditions!.find((c) => c.type === 'Ready')!.state).toBe('CONDITION_FAILED');
  const svc = await getService(name);
  expect(svc.terminalCondition!.state).toBe('CONDITION_FAILED');
  expect(short(svc.latestReadyRevision)).toBe(old);
  expect(fake.servedSplit(P, R, 'never')).toEqual({ [old]: 100 });
  await expectCode(
    services.updateService({
      service: {
        ...svc,
        traffic: [
          { type: REV, revision: old, percent: 50 },
          { type: REV, revision: 'never-broken', percent: 50 },
        ],
      },
    }),
    Status.FAILED_PRECONDITION,
  );
});

test('knobs: fail the next N calls with a code (counted), and an operation nobody polls completes at the backstop time', async () => {
  const name = seed('knobs');
  const before = fake.callCount('UpdateService');
  fake.failNext('UpdateService', 2, Status.UNAVAILABLE);
  const { request } = await deployRequest(name, 'knobs-r2');
  await expectCode(services.updateService(request), Status.UNAVAILABLE); // UpdateService is not retried by the client
  await expectCode(services.updateService(request), Status.UNAVAILABLE);
  fake.knobs.operationPolls = 1000;
  fake.knobs.operationMaxMs = 300;
  await services.updateService(request);
  expect(fake.callCount('UpdateService') - before).toBe(3);
  expect((await getService(name)).reconciling).toBe(true);
  await new Promise((r) => setTimeout(r, 400));
  const svc = await getService(name);
  expect(svc.reconciling).toBe(false);
  expect(short(svc.latestReadyRevision)).toBe('knobs-r2');
});

test('etag: an update with a stale etag is ABORTED', async () => {
  const name = seed('etag');
  const { request } = await deployRequest(name, 'etag-r2');
  await (await services.updateService(request))[0].promise();
  await expectCode(services.updateService(request), Status.ABORTED, /etag/); // same request, etag of the old generation
});

test('tag URLs answer probes over the loopback HTTP server; unhealthy revisions answer 500', async () => {
  const name = seed('probe');
  const { request } = await deployRequest(name, 'probe-r2');
  await (await services.updateService(request))[0].promise();
  const uri = (await getService(name)).trafficStatuses!.find((s) => s.tag === 'canary')!.uri!;
  const ok = await fetch(fake.loopbackUrl(`${uri}/healthz`));
  expect(ok.status).toBe(200);
  expect(await ok.json()).toMatchObject({ revision: 'probe-r2', release: 'r2', path: '/healthz' });
  fake.knobs.unhealthy = (r) => r.revision === 'probe-r2';
  expect((await fetch(fake.loopbackUrl(`${uri}/healthz`))).status).toBe(500);
  expect((await fetch(fake.loopbackUrl('https://nope---probe-0000000000.a.run.app/'))).status).toBe(404);
});

test('create, list, delete: duplicates refused, serving revisions cannot be deleted', async () => {
  const parent = `projects/${P}/locations/${R}`;
  const [op] = await services.createService({
    parent,
    serviceId: 'created',
    service: { template: { containers: [{ image: IMG_A, ports: [{ containerPort: 8080 }] }] } },
  });
  await op.promise();
  await expectCode(
    services.createService({ parent, serviceId: 'created', service: { template: { containers: [{ image: IMG_A }] } } }),
    Status.ALREADY_EXISTS,
  );
  const [list] = await services.listServices({ parent });
  expect(list.map((s) => short(s.name))).toContain('created');
  const name = svcName('created');
  const first = short((await getService(name)).latestReadyRevision);
  const dep = await deployRequest(name, 'created-r2');
  await (
    await services.updateService({ service: { ...dep.request.service, traffic: [{ type: REV, revision: 'created-r2', percent: 100 }] } })
  )[0].promise();
  await expectCode(revisions.deleteRevision({ name: `${name}/revisions/created-r2` }), Status.FAILED_PRECONDITION);
  await (await revisions.deleteRevision({ name: `${name}/revisions/${first}` }))[0].promise();
  expect(fake.revisionNames(P, R, 'created')).toEqual(['created-r2']);
  await (await services.deleteService({ name }))[0].promise();
  await expectCode(services.getService({ name }), Status.NOT_FOUND);
});
