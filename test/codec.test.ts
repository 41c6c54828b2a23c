import { randomBytes } from 'node:crypto';
import { Client, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { Worker } from '@temporalio/worker';
import {
  AesGcmPayloadCodec,
  ENCRYPTED_ENCODING,
  KEY_ID_METADATA,
  codecFromEnv,
  dataConverterFromEnv,
  dataConverterWithCodec,
} from '../src/temporal/codec';
import { payloadFromJson, payloadToJson, startCodecServer, type CodecServer } from '../src/temporal/codec-server';
import { startRollout } from '../src/client';
import { createRollgateWorker } from '../src/worker';
import { messageNonceQuery, type RolloutResult } from '../src/contract';
import { LambdaClient, UpdateFunctionConfigurationCommand } from '@aws-sdk/client-lambda';
import { TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import type { LambdaTargetSpec } from '../src/spec/schema';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, waitForStatus, type Harness } from './support/harness';

const key = (id: string) => ({ id, key: randomBytes(32) });
const toPayload = (v: unknown) => defaultPayloadConverter.toPayload(v);
const fromPayload = (p: Payload) => defaultPayloadConverter.fromPayload(p);
/** Local-activity markers: core writes `details.data` (its bookkeeping) as plain JSON; the result is codec-encoded. */
const isLocalActivityMarkerData = (x: { path: string }) => /markerRecordedEventAttributes\.details\.data\./.test(x.path);
const LOCAL_ACTIVITY_MARKER_KEYS = ['activity_id', 'activity_type', 'attempt', 'backoff', 'complete_time', 'original_schedule_time', 'seq'];
const meta = (p: Payload, k: string) => Buffer.from(p.metadata![k]!).toString('utf8');

describe('AES-256-GCM payload codec', () => {
  test('round trip: payloads come back identical; stored form is binary/encrypted with the key id and no plaintext', async () => {
    const codec = new AesGcmPayloadCodec([key('k1')]);
    const values = [{ service: 'payments', env: { DB_PASSWORD: 'hunter2-plaintext' } }, 'a string', 42, null, [1, 'two']];
    const plain = values.map(toPayload);
    const enc = await codec.encode(plain);
    for (const p of enc) {
      expect(meta(p, 'encoding')).toBe(ENCRYPTED_ENCODING);
      expect(meta(p, KEY_ID_METADATA)).toBe('k1');
      expect(Object.keys(p.metadata!).sort()).toEqual(['encoding', KEY_ID_METADATA].sort());
    }
    expect(Buffer.from(enc[0].data!).toString('latin1')).not.toContain('hunter2');
    // Random IV: the same value encrypts differently each time.
    const again = await codec.encode([plain[0]]);
    expect(Buffer.from(again[0].data!).equals(Buffer.from(enc[0].data!))).toBe(false);
    const dec = await codec.decode(enc);
    expect(dec.map(fromPayload)).toEqual(values);
    // Payloads that are not encrypted pass through decode untouched (history written before the codec).
    expect((await codec.decode([plain[1]])).map(fromPayload)).toEqual(['a string']);
  });

  test('tamper detection: a flipped bit, a truncated payload or a swapped key id is refused', async () => {
    const k1 = key('k1');
    const k2 = key('k2');
    const codec = new AesGcmPayloadCodec([k1, k2]);
    const [enc] = await codec.encode([toPayload({ release: 'r9' })]);
    for (const i of [0, 13, enc.data!.length - 1]) {
      const bad = Buffer.from(enc.data!);
      bad[i] ^= 0x01;
      await expect(codec.decode([{ ...enc, data: new Uint8Array(bad) }])).rejects.toThrow(/failed authentication with key "k1"/);
    }
    await expect(codec.decode([{ ...enc, data: enc.data!.subarray(0, 20) }])).rejects.toThrow(/truncated|authentication/);
    // The key id is authenticated data: relabelling the payload with another known key fails too.
    const relabelled = { ...enc, metadata: { ...enc.metadata, [KEY_ID_METADATA]: new TextEncoder().encode('k2') } };
    await expect(codec.decode([relabelled])).rejects.toThrow(/failed authentication with key "k2"/);
    const noKeyId = { ...enc, metadata: { encoding: enc.metadata!.encoding } };
    await expect(codec.decode([noKeyId])).rejects.toThrow(/no encryption-key-id/);
  });

  test('key rotation: decode by key id; old payloads stay readable with the old key as a previous key', async () => {
    const old = key('2024-q4');
    const cur = key('2025-q1');
    const before = new AesGcmPayloadCodec([old]);
    const after = new AesGcmPayloadCodec([cur, old]);
    const [fromBefore] = await before.encode([toPayload('written before rotation')]);
    const [fromAfter] = await after.encode([toPayload('written after rotation')]);
    expect(meta(fromAfter, KEY_ID_METADATA)).toBe('2025-q1');
    expect((await after.decode([fromBefore, fromAfter])).map(fromPayload)).toEqual(['written before rotation', 'written after rotation']);
    // A process that lacks the new key says which key it needs.
    await expect(before.decode([fromAfter])).rejects.toThrow(/encrypted with key "2025-q1".*ROLLGATE_CODEC_PREVIOUS_KEYS/);

    // The same through the environment.
    const env = {
      ROLLGATE_CODEC_KEY: cur.key.toString('base64'),
      ROLLGATE_CODEC_KEY_ID: cur.id,
      ROLLGATE_CODEC_PREVIOUS_KEYS: `${old.id}:${old.key.toString('base64')}`,
    };
    const fromEnv = codecFromEnv(env)!;
    expect(fromEnv.activeKeyId).toBe('2025-q1');
    expect(fromEnv.keyIds).toEqual(['2025-q1', '2024-q4']);
    expect((await fromEnv.decode([fromBefore])).map(fromPayload)).toEqual(['written before rotation']);
  });

  test('environment: off without a key; clear errors for a bad key, a missing id or orphan previous keys', () => {
    expect(dataConverterFromEnv({})).toBeUndefined();
    const dc = dataConverterFromEnv({ ROLLGATE_CODEC_KEY: randomBytes(32).toString('base64'), ROLLGATE_CODEC_KEY_ID: 'k' })!;
    expect(dc.payloadCodecs).toHaveLength(1);
    expect(dc.failureConverterPath).toMatch(/failure-converter/);
    expect(() => codecFromEnv({ ROLLGATE_CODEC_KEY: randomBytes(16).toString('base64'), ROLLGATE_CODEC_KEY_ID: 'k' })).toThrow(
      /must be 32 bytes.*got 16 bytes.*openssl rand -base64 32/,
    );
    expect(() => codecFromEnv({ ROLLGATE_CODEC_KEY: randomBytes(32).toString('base64') })).toThrow(/ROLLGATE_CODEC_KEY_ID is not/);
    expect(() => codecFromEnv({ ROLLGATE_CODEC_KEY: randomBytes(32).toString('base64'), ROLLGATE_CODEC_KEY_ID: 'a b' })).toThrow(
      /key id "a b" is invalid/,
    );
    expect(() => codecFromEnv({ ROLLGATE_CODEC_PREVIOUS_KEYS: 'x:abc' })).toThrow(/ROLLGATE_CODEC_KEY is not/);
  });
});

describe('codec server (Temporal UI protocol)', () => {
  const UI = 'http://127.0.0.1:8233';
  const TOKEN = 'codec-token-for-tests';
  let server: CodecServer;
  let codec: AesGcmPayloadCodec;
  beforeAll(async () => {
    codec = new AesGcmPayloadCodec([key('ui')]);
    server = await startCodecServer({ codec, token: TOKEN, corsOrigins: [UI] });
  });
  afterAll(async () => server?.close());

  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: UI, 'x-namespace': 'default', ...headers },
      body: JSON.stringify(body),
    });

  test('POST /encode then /decode with the bearer token round-trips {payloads:[...]} in proto JSON', async () => {
    const input = { payloads: [payloadToJson(toPayload({ artifact: 's3://bucket/key.zip' })), payloadToJson(toPayload('x'))] };
    const enc = await post('/encode', input, { authorization: `Bearer ${TOKEN}` });
    expect(enc.status).toBe(200);
    expect(enc.headers.get('access-control-allow-origin')).toBe(UI);
    const encoded = (await enc.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(encoded.payloads).toHaveLength(2);
    expect(Buffer.from(encoded.payloads[0].metadata.encoding, 'base64').toString()).toBe(ENCRYPTED_ENCODING);
    expect(Buffer.from(encoded.payloads[0].data, 'base64').toString('latin1')).not.toContain('s3://bucket');

    const dec = await post('/decode', encoded, { authorization: `Bearer ${TOKEN}` });
    expect(dec.status).toBe(200);
    const decoded = (await dec.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(decoded).toEqual(input);
    expect(fromPayload(payloadFromJson(decoded.payloads[0]))).toEqual({ artifact: 's3://bucket/key.zip' });
  });

  test('CORS preflight from the UI origin allows POST with authorization, content-type and x-namespace, without a token', async () => {
    const res = await fetch(`${server.url}/decode`, {
      method: 'OPTIONS',
      headers: {
        origin: UI,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,x-namespace',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    expect(res.headers.get('access-control-allow-methods')).toMatch(/POST/);
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').split(',').map((s) => s.trim().toLowerCase());
    expect(allowed).toEqual(expect.arrayContaining(['authorization', 'content-type', 'x-namespace']));
    // Another origin gets no CORS grant.
    const other = await fetch(`${server.url}/decode`, { method: 'OPTIONS', headers: { origin: 'http://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  test('requests without the right bearer token get 401 (readable by the UI through CORS); bad bodies get 400', async () => {
    const body = { payloads: [payloadToJson(toPayload('secret'))] };
    const attempts: Record<string, string>[] = [
      {},
      { authorization: 'Bearer wrong' },
      { authorization: TOKEN },
      { authorization: `Basic ${TOKEN}` },
    ];
    for (const headers of attempts) {
      const res = await post('/encode', body, headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(res.headers.get('access-control-allow-origin')).toBe(UI);
    }
    expect((await post('/decode', body)).status).toBe(401);
    expect((await post('/decode', { nope: 1 }, { authorization: `Bearer ${TOKEN}` })).status).toBe(400);
    expect((await fetch(`${server.url}/decode`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(405);
    // A payload encrypted under an unknown key is a 400 with the reason, not a crash.
    const foreign = await new AesGcmPayloadCodec([key('other')]).encode([toPayload('x')]);
    const res = await post('/decode', { payloads: foreign.map(payloadToJson) }, { authorization: `Bearer ${TOKEN}` });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toMatch(/key "other"/);
  });
});

describe('end to end with the dev server: a real rollout with the codec on', () => {
  let h: Harness;
  let worker: Worker;
  let run: Promise<void>;
  const codec = new AesGcmPayloadCodec([key('e2e')]);
  const dataConverter = dataConverterWithCodec(codec);
  let client: Client;
  beforeAll(async () => {
    h = await createHarness('codec', { dataConverter });
    client = new Client({ connection: h.client.connection, dataConverter });
    worker = await createRollgateWorker({
      connection: h.nativeConnection,
      taskQueue: h.taskQueue,
      deps: { ...h.deps, client },
      workflowBundlePath: process.env.ROLLGATE_TEST_BUNDLE,
      workerOptions: { dataConverter },
    });
    run = worker.run();
  });
  afterAll(async () => {
    worker?.shutdown();
    await run;
    await h?.close();
  });

  /** Every payload of a raw history (outside search attributes), with its JSON path. */
  function payloadsOf(history: unknown): { path: string; p: { metadata?: Record<string, string>; data?: string } }[] {
    const out: { path: string; p: { metadata?: Record<string, string>; data?: string } }[] = [];
    const walk = (v: unknown, path: string): void => {
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`));
      else if (v && typeof v === 'object') {
        const o = v as Record<string, unknown>;
        if (o.metadata && typeof o.metadata === 'object' && 'encoding' in (o.metadata as object)) out.push({ path, p: o });
        else for (const [k, x] of Object.entries(o)) walk(x, `${path}.${k}`);
      }
    };
    walk(history, '');
    return out.filter((x) => !/searchAttributes|indexedFields/.test(x.path));
  }

  /** The raw history as text, with every base64 `data`/`encoding` field decoded too. */
  function rawTextOf(history: unknown): string {
    const raw = [JSON.stringify(history)];
    const decodeAll = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(decodeAll);
      else if (v && typeof v === 'object')
        for (const [k, x] of Object.entries(v)) {
          if (typeof x === 'string' && (k === 'data' || k === 'encoding')) raw.push(Buffer.from(x, 'base64').toString('utf8'));
          else decodeAll(x);
        }
    };
    decodeAll(history);
    return raw.join('\n');
  }

  /** Every Temporal Failure object in a raw history (with their causes), with its JSON path. */
  function failuresOf(history: unknown): { path: string; f: Record<string, any> }[] {
    const out: { path: string; f: Record<string, any> }[] = [];
    const walk = (v: unknown, path: string): void => {
      if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`));
      else if (v && typeof v === 'object') {
        const o = v as Record<string, unknown>;
        if (/\.(failure|cause)$/.test(path) && 'message' in o) out.push({ path, f: o });
        for (const [k, x] of Object.entries(o)) walk(x, `${path}.${k}`);
      }
    };
    walk(history, '');
    return out;
  }

  test('failing rollouts (env drift, a failing test command): every failure message and value in the raw history is encrypted', async () => {
    const m = randomBytes(3).toString('hex');
    const markers = {
      missingKey: `MISSING_${m}`,
      changedValue: `changed-value-${m}`,
      stableValue: `stable-value-${m}`,
      testOutput: `/nonexistent-${m}`,
    };
    // Drift: the stable version has a key $LATEST lost, and a value $LATEST changed.
    const drift = lambdaSpec(h, `cdrift-${m}`, { waves: [] }, 1);
    await createFunctions(h, drift, { [markers.missingKey]: 'x', LOG_LEVEL: markers.stableValue });
    const t = drift.targets[0] as LambdaTargetSpec;
    await new LambdaClient({ endpoint: h.motoUrl, region: t.region, credentials: TEST_CREDENTIALS }).send(
      new UpdateFunctionConfigurationCommand({ FunctionName: t.function, Environment: { Variables: { LOG_LEVEL: markers.changedValue } } }),
    );
    // A test command that fails, its output naming the marker: an activity failure with that message.
    const failing = lambdaSpec(h, `cfail-${m}`, { waves: [], test: { command: `ls ${markers.testOutput}` } }, 1);
    await createFunctions(h, failing);

    const hd = await startRollout(client, drift, { startedBy: 'codec-test', taskQueue: h.taskQueue });
    const ht = await startRollout(client, failing, { startedBy: 'codec-test', taskQueue: h.taskQueue });
    const paused = await waitForStatus(hd, (st) => st.state === 'paused', 60_000, 'paused after the drift');
    // Read through the codec, the reasons are all there (so their absence from the raw history is not vacuous).
    expect(paused.rollbackReason).toContain(`env keys missing vs stable 1: ${markers.missingKey}`);
    await hd.signal('abort');
    expect(((await hd.result()) as RolloutResult).state).toBe('rolled-back');
    const failed = (await ht.result()) as RolloutResult;
    expect(failed.state).toBe('failed');
    expect(failed.reason).toMatch(new RegExp(`test command exited 2: .*${markers.testOutput}`));

    for (const handle of [hd, ht]) {
      const history = JSON.parse(historyToJSON(await handle.fetchHistory()));
      const rawText = rawTextOf(history);
      for (const [name, value] of Object.entries(markers))
        expect({ id: handle.workflowId, name, readable: rawText.includes(value) }).toEqual({
          id: handle.workflowId,
          name,
          readable: false,
        });
      for (const value of ['env keys missing', 'command exited', 'No such file', 'codec-test'])
        expect({ id: handle.workflowId, value, readable: rawText.includes(value) }).toEqual({
          id: handle.workflowId,
          value,
          readable: false,
        });
      // Every failure: message and stack moved into the encrypted attributes.
      for (const { path, f } of failuresOf(history)) {
        expect({ path, message: f.message, stackTrace: f.stackTrace ?? '' }).toEqual({ path, message: 'Encoded failure', stackTrace: '' });
        expect(Buffer.from(f.encodedAttributes.metadata.encoding, 'base64').toString()).toBe(ENCRYPTED_ENCODING);
      }
      const plain = payloadsOf(history).filter(
        (x) =>
          !/markerRecordedEventAttributes\.details\.patch-data/.test(x.path) &&
          !isLocalActivityMarkerData(x) &&
          Buffer.from(x.p.metadata!.encoding, 'base64').toString() !== ENCRYPTED_ENCODING,
      );
      expect(plain.map((x) => x.path)).toEqual([]);
    }
    // The failing test command did fail as an activity, with its failure in the history (encrypted above).
    const testHistory = JSON.parse(historyToJSON(await ht.fetchHistory()));
    expect(failuresOf(testHistory).filter((x) => /activityTaskFailedEventAttributes/.test(x.path)).length).toBeGreaterThanOrEqual(1);
  });

  test('no spec value and no env value is readable in the raw history; the codec restores them all', async () => {
    const m = randomBytes(3).toString('hex');
    const markers = {
      schemaRev: `schemarev-${m}`,
      indexHash: `idxhash-${m}`,
      approver: `approver-${m}`,
      probe: `probe-payload-${m}`,
      envSecret: `env-secret-${m}`,
      envPlain: `env-plain-${m}`,
    };
    const spec = lambdaSpec(
      h,
      `codec-${m}`,
      {
        schema_rev: markers.schemaRev,
        index_hash: markers.indexHash,
        approvers: [markers.approver],
        probes: [{ name: 'health', payload: { marker: markers.probe }, expect_contains: markers.probe }],
        waves: [],
      },
      1,
    );
    await createFunctions(h, spec, { DB_PASSWORD: markers.envSecret, FEATURE_FLAG: markers.envPlain });
    const traffic = simulateTraffic(h, spec);
    let handle: WorkflowHandle;
    try {
      handle = await startRollout(client, spec, { startedBy: 'codec-test', taskQueue: h.taskQueue });
      const res = (await handle.result()) as RolloutResult;
      expect(res.state).toBe('succeeded');
      expect(res.status.history.map((e) => e.text).join('\n')).toMatch(/1 probe\(s\) ok/);
    } finally {
      traffic.stop();
    }

    const history = JSON.parse(historyToJSON(await handle.fetchHistory()));
    // Every payload outside the search attributes is encrypted.
    const nonSA = payloadsOf(history);
    expect(nonSA.length).toBeGreaterThan(20);
    // The SDK writes patch markers (`patched('rollout-v2')`) itself, without the payload codec: their
    // one payload is the patch id, a constant of our code. Check that it is exactly that.
    const isPatchMarker = (x: (typeof nonSA)[number]) => /markerRecordedEventAttributes\.details\.patch-data/.test(x.path);
    for (const m of nonSA.filter(isPatchMarker))
      expect(JSON.parse(Buffer.from(m.p.data!, 'base64').toString())).toEqual({
        id: expect.stringMatching(/^[a-z0-9-]+$/),
        deprecated: false,
      });
    // The SDK's own local-activity marker data (sequence, attempt, activity type, times) is not
    // encoded either; the activity's result (the identity check's answer) is, in `details.result`.
    for (const m of nonSA.filter(isLocalActivityMarkerData))
      expect(Object.keys(JSON.parse(Buffer.from(m.p.data!, 'base64').toString())).sort()).toEqual(LOCAL_ACTIVITY_MARKER_KEYS);
    const plainOnes = nonSA.filter(
      (x) =>
        !isPatchMarker(x) &&
        !isLocalActivityMarkerData(x) &&
        Buffer.from(x.p.metadata!.encoding, 'base64').toString() !== ENCRYPTED_ENCODING,
    );
    expect(plainOnes.map((x) => x.path)).toEqual([]);

    // The raw history, with every base64 field decoded, contains none of the values.
    const rawText = rawTextOf(history);
    for (const [name, value] of Object.entries(markers))
      expect({ name, readable: rawText.includes(value) }).toEqual({ name, readable: false });
    for (const value of ['RELEASE_ID', spec.artifact.file!, h.webhook.url, 'codec-test']) expect(rawText).not.toContain(value);
    // The message nonce (the local activity's result) is encrypted too: a reader without the key cannot forge with it.
    const nonce = await handle!.query(messageNonceQuery);
    expect(nonce).toMatch(/^[\w-]{22}$/);
    expect(rawText).not.toContain(nonce!);

    // Control: the markers were in the history, so their absence above is not vacuous.
    const decoded = await codec.decode(nonSA.map((x) => payloadFromJson(x.p as never)));
    const clear = decoded.map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8')).join('\n');
    for (const value of [
      markers.schemaRev,
      markers.indexHash,
      markers.approver,
      markers.probe,
      'RELEASE_ID',
      spec.artifact.file!,
      'codec-test',
    ])
      expect(clear).toContain(value);
    // The env values themselves never enter the history at all (salted hashes only), encrypted or not.
    expect(clear).not.toContain(markers.envSecret);
  });
});
