/**
 * Cloud Run Admin API v2 contract: the fixtures in test/fixtures/cloud-run-v2 are our own examples
 * of the shapes Google's published REST reference documents (each names its page in `_source`).
 * (1) Every fixture is valid proto3 JSON for the protos `@google-cloud/run` ships.
 * (2) The fake, driven only through the real `@google-cloud/run` client the way
 *     src/providers/cloud-run.ts drives it, answers in those shapes and with the documented codes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RevisionsClient, ServicesClient } from '@google-cloud/run';
import { Status } from 'google-gax';
import { CloudRunFake } from '../src/dev/cloud-run-fake';
import { gcpClientOptions } from '../src/providers/gcp-client';
import { contractProblems, toProto3Json, validateJson, valuesAt, type ContractFixture } from './support/proto-contract';

process.env.METADATA_SERVER_DETECTION = 'none';

const fixture = <T = ContractFixture>(file: string): T =>
  JSON.parse(readFileSync(join(__dirname, 'fixtures', 'cloud-run-v2', file), 'utf8')) as T;
const SERVICE = fixture('service.json');
const REVISION = fixture('revision.json');
const OPERATION = fixture('operation.json');
interface ErrorCase {
  id: string;
  call: string;
  condition: string;
  code: keyof typeof Status;
  _source: string;
}
const ERRORS = fixture<{ _source: string[]; cases: ErrorCase[]; failedOperation: ContractFixture }>('errors.json');

const IMG_A = `europe-docker.pkg.dev/demo-project/app/orders@sha256:${'a'.repeat(64)}`;
const IMG_B = `europe-docker.pkg.dev/demo-project/app/orders@sha256:${'b'.repeat(64)}`;
const REV = 'TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION' as const;
const P = 'demo-project';
const R = 'europe-west1';
const svcName = (s: string) => `projects/${P}/locations/${R}/services/${s}`;
const short = (full: string | null | undefined) => (full ?? '').split('/').pop()!;

describe('fixtures follow the published shapes and the shipped protos', () => {
  const protoFixtures: [string, ContractFixture][] = [
    ['service.json', SERVICE],
    ['revision.json', REVISION],
    ['operation.json', OPERATION],
    ['errors.json failedOperation', ERRORS.failedOperation],
  ];

  test.each(protoFixtures)('%s: every key is a field of its message type, with the right JSON kind', (_name, fx) => {
    expect(validateJson(fx, fx._type)).toEqual([]);
  });

  test.each(protoFixtures)('%s: its own _required and _formats hold for it, and it names its sources', (_name, fx) => {
    expect(contractProblems(fx, fx)).toEqual([]);
    expect(JSON.stringify(fx._source)).toMatch(/https:\/\//);
  });

  test('the validator rejects an unknown key, a wrong kind, an unknown enum value and a bad timestamp', () => {
    const broken = {
      ...SERVICE,
      trafficSplit: [], // not a Service field
      generation: 3, // int64 is a string in JSON
      ingress: 'INGRESS_ALL', // not an IngressTraffic value
      createTime: '2026-11-30 09:12', // not RFC 3339
      trafficStatuses: [{ type: 'TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION', percent: '100' }], // int32 is a number
    };
    const problems = validateJson(broken, 'google.cloud.run.v2.Service').join('\n');
    expect(problems).toMatch(/trafficSplit: unknown key/);
    expect(problems).toMatch(/generation: int64 must be a decimal string/);
    expect(problems).toMatch(/ingress: .*one of INGRESS_TRAFFIC_UNSPECIFIED/);
    expect(problems).toMatch(/createTime: Timestamp must be an RFC 3339 string/);
    expect(problems).toMatch(/trafficStatuses\[0\]\.percent: int32 must be an integer/);
    const { etag: _e, ...noEtag } = SERVICE;
    expect(contractProblems(noEtag, SERVICE)).toEqual(['etag: required but absent']);
    expect(contractProblems({ ...SERVICE, uid: 'f'.repeat(32) }, SERVICE).join()).toMatch(/uid: .* does not match/);
  });

  test('errors.json: every case has a canonical gRPC code and a published source', () => {
    expect(ERRORS.cases.length).toBeGreaterThan(0);
    for (const c of ERRORS.cases) {
      expect(typeof Status[c.code]).toBe('number');
      expect(c._source).toMatch(/^https:\/\//);
    }
  });
});

describe('the fake answers the real client in the documented shapes', () => {
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
    fake.knobs.operationPolls = 2;
    fake.knobs.operationMaxMs = 0; // only polls complete an operation: states stay observable
    fake.knobs.neverReady = () => false;
  });

  const serviceJson = async (name: string) => toProto3Json((await services.getService({ name }))[0], 'google.cloud.run.v2.Service') as any;
  const seed = (service: string) => {
    fake.seedService({ project: P, region: R, service, image: IMG_A, env: { RELEASE_ID: 'r1' } });
    return svcName(service);
  };

  /** The provider's deploy: explicit revision name, new image, old revision keeps 100 %, the new one a tag at 0 %. */
  async function deploy(name: string, revision: string, release = 'r2') {
    const [svc] = await services.getService({ name });
    const template = JSON.parse(JSON.stringify(svc.template));
    template.revision = revision;
    template.containers[0].image = IMG_B;
    template.containers[0].env = [{ name: 'RELEASE_ID', value: release }];
    const old = short(svc.latestReadyRevision);
    const traffic = [
      { type: REV, revision: old, percent: 100 },
      { type: REV, revision, percent: 0, tag: 'canary' },
    ];
    const [op] = await services.updateService({ service: { ...svc, template, traffic } });
    return { op, before: svc, old };
  }

  /** The operation as a REST client would see it: the raw google.longrunning.Operation. */
  const operationJson = (op: { latestResponse: unknown }) =>
    toProto3Json(op.latestResponse as object, 'google.longrunning.Operation') as any;

  test('GetService of a serving service', async () => {
    const json = await serviceJson(seed('shape'));
    expect(contractProblems(json, SERVICE)).toEqual([]);
  });

  test('UpdateService with traffic: the operation while running and when done, the service while reconciling and after', async () => {
    const name = seed('traffic');
    const { op, before, old } = await deploy(name, 'traffic-r2');

    const running = operationJson(op);
    expect(contractProblems(running, OPERATION)).toEqual([]);
    expect(running.done).toBeUndefined(); // false: omitted in proto3 JSON
    expect(running.error).toBeUndefined();
    expect(running.response).toBeUndefined();

    const mid = await serviceJson(name);
    expect(contractProblems(mid, SERVICE)).toEqual([]);
    expect(mid.reconciling).toBe(true);
    expect(mid.terminalCondition.state).toBe('CONDITION_RECONCILING');

    await op.promise(); // polls GetOperation until done
    const done = operationJson(op);
    expect(contractProblems(done, OPERATION)).toEqual([]);
    expect(done.done).toBe(true);
    expect(done.error).toBeUndefined();
    expect(done.response['@type']).toBe('type.googleapis.com/google.cloud.run.v2.Service');
    expect(done.response.name).toBe(name);

    const after = await serviceJson(name);
    expect(contractProblems(after, SERVICE)).toEqual([]);
    // Documented under `reconciling`: once it succeeded these pairs match.
    expect(after.reconciling).toBeUndefined();
    expect(after.terminalCondition.state).toBe('CONDITION_SUCCEEDED');
    expect(after.observedGeneration).toBe(after.generation);
    expect(after.latestReadyRevision).toBe(after.latestCreatedRevision);
    const routing = (xs: any[]) => xs.map(({ type, revision, percent, tag }) => ({ type, revision, percent, tag }));
    expect(routing(after.trafficStatuses)).toEqual(routing(after.traffic));
    expect(BigInt(after.generation)).toBe(BigInt(String(before.generation)) + 1n);
    const canary = after.trafficStatuses.find((s: any) => s.tag === 'canary');
    expect(canary).toMatchObject({ type: REV, revision: 'traffic-r2' });
    expect(canary.uri).toMatch(new RegExp(SERVICE._formats!['trafficStatuses[].uri']));
    expect(after.trafficStatuses.find((s: any) => s.revision === old)).toMatchObject({ percent: 100 });
  });

  test('GetRevision and ListRevisions', async () => {
    const name = seed('revs');
    const { op } = await deploy(name, 'revs-r2');
    await op.promise();
    const [rev] = await revisions.getRevision({ name: `${name}/revisions/revs-r2` });
    const json = toProto3Json(rev, 'google.cloud.run.v2.Revision') as any;
    expect(contractProblems(json, REVISION)).toEqual([]);
    expect(json.service).toBe(name);
    expect(json.conditions.find((c: any) => c.type === 'Ready').state).toBe('CONDITION_SUCCEEDED');
    const [list] = await revisions.listRevisions({ parent: name });
    expect(list).toHaveLength(2);
    expect(list.map((r) => short(r.name))).toContain('revs-r2');
    for (const r of list) expect(contractProblems(toProto3Json(r, 'google.cloud.run.v2.Revision'), REVISION)).toEqual([]);
  });

  test('a failed reconciliation keeps the last serving state (observedGeneration, latestReadyRevision, trafficStatuses)', async () => {
    const name = seed('failing');
    fake.knobs.neverReady = (r) => r.env.RELEASE_ID === 'broken';
    const before = await serviceJson(name);
    const { op } = await deploy(name, 'failing-r2', 'broken');
    await expect(op.promise()).rejects.toBeDefined();

    const failedOp = operationJson(op);
    expect(contractProblems(failedOp, ERRORS.failedOperation)).toEqual([]);
    expect(failedOp.response).toBeUndefined(); // union: error XOR response

    const after = await serviceJson(name);
    expect(contractProblems(after, SERVICE)).toEqual([]);
    expect(after.reconciling).toBeUndefined();
    expect(after.terminalCondition.state).toBe('CONDITION_FAILED');
    expect(BigInt(after.generation)).toBe(BigInt(before.generation) + 1n);
    expect(after.observedGeneration).toBe(before.observedGeneration);
    expect(after.latestReadyRevision).toBe(before.latestReadyRevision);
    expect(after.trafficStatuses).toEqual(before.trafficStatuses);
  });

  /** One way to provoke each errors.json case through the real client. */
  const provoke: Record<string, () => Promise<unknown>> = {
    'get-missing-service': () => services.getService({ name: svcName('nowhere') }),
    'update-missing-service': async () => {
      const svc = (await services.getService({ name: seed('to-copy') }))[0];
      return services.updateService({ service: { ...svc, name: svcName('missing-too') } });
    },
    'get-missing-revision': () => revisions.getRevision({ name: `${seed('norev')}/revisions/norev-zzz` }),
    'get-missing-operation': () =>
      services.checkUpdateServiceProgress(`projects/${P}/locations/${R}/operations/6b1f0d2e-0000-4000-8000-000000000000`),
    'create-existing-service': async () => {
      const name = seed('twice');
      const [svc] = await services.getService({ name });
      return services.createService({ parent: `projects/${P}/locations/${R}`, serviceId: 'twice', service: { template: svc.template } });
    },
    'stale-etag': async () => {
      const name = seed('stale');
      const [stale] = await services.getService({ name });
      const [op] = await services.updateService({ service: { ...stale, labels: { changed: 'yes' } } });
      await op.promise();
      return services.updateService({ service: { ...stale, labels: { changed: 'again' } } }); // etag of the old generation
    },
    'duplicate-revision-name': async () => {
      const name = seed('dup');
      const { op } = await deploy(name, 'dup-r2', 'r2');
      await op.promise();
      return deploy(name, 'dup-r2', 'r3'); // same name, other template
    },
    'traffic-not-100': async () => {
      const name = seed('split');
      const [svc] = await services.getService({ name });
      const rev = short(svc.latestReadyRevision);
      return services.updateService({
        service: { ...svc, traffic: [{ type: REV, revision: rev, percent: 90 }] },
        updateMask: { paths: ['traffic'] },
      });
    },
  };

  test('every errors.json case has a way to provoke it here', () => {
    expect(Object.keys(provoke).sort()).toEqual(ERRORS.cases.map((c) => c.id).sort());
  });

  test.each(ERRORS.cases.map((c) => [c.id, c] as const))('%s gives the documented code', async (_id, c) => {
    const err = (await provoke[c.id]().then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: number } | undefined;
    expect(err).toBeDefined();
    expect(`${c.call}: ${Status[err!.code!]}`).toBe(`${c.call}: ${c.code}`);
  });

  test('valuesAt reads nested and repeated paths (helper self-check)', () => {
    expect(valuesAt({ a: [{ b: 1 }, { b: 2 }] }, 'a[].b')).toEqual([1, 2]);
    expect(valuesAt({ a: [] }, 'a[].b')).toEqual([undefined]);
  });
});
