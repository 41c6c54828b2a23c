/**
 * LambdaProvider.restoreLatest's decisions with a fake Lambda client (no moto): what is written,
 * with which RevisionId, bounds (size, deadline), error messages, and the default code download
 * (a loopback HTTP server standing in for the presigned Code.Location).
 */
import { createServer, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import { LambdaProvider, type CodeFetcher } from '../src/providers/aws-lambda';
import { NonRetryableProviderError } from '../src/providers/types';
import type { LambdaTargetSpec } from '../src/spec/schema';

const t: LambdaTargetSpec = { name: 'eu', provider: 'aws-lambda', region: 'eu-west-1', function: 'fn', alias: 'live' };
const SECRET = 'unit-s3cret';
const V1_ZIP = Buffer.from('zip of version 1');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('base64');

interface Fn {
  CodeSha256: string;
  CodeSize?: number;
  RevisionId?: string;
  PackageType?: string;
  Environment?: { Variables?: Record<string, string>; Error?: { ErrorCode: string; Message: string } };
}

/** A Lambda with $LATEST and version 1; records every command it gets. */
function fakeLambda(v1: Fn, latest: Fn, fail?: (name: string) => Error | undefined) {
  const sent: { name: string; input: Record<string, unknown> }[] = [];
  const client = {
    send: async (cmd: { constructor: { name: string }; input: Record<string, unknown> }): Promise<unknown> => {
      const name = cmd.constructor.name.replace(/Command$/, '');
      sent.push({ name, input: cmd.input });
      const err = fail?.(name);
      if (err) throw err;
      const q = cmd.input.Qualifier;
      const state = { State: 'Active', LastUpdateStatus: 'Successful' };
      switch (name) {
        case 'GetFunction':
          return q === '1'
            ? { Configuration: { ...v1, Version: '1', ...state }, Code: { Location: 'https://code.example/v1?sig=x' } }
            : { Configuration: { ...latest, Version: '$LATEST', ...state } };
        case 'GetFunctionConfiguration':
          return { ...latest, Version: '$LATEST', ...state };
        case 'UpdateFunctionCode':
          latest.CodeSha256 = sha(Buffer.from(cmd.input.ZipFile as Uint8Array));
          latest.RevisionId = `${latest.RevisionId}+code`;
          return { ...latest };
        case 'UpdateFunctionConfiguration':
          latest.Environment = cmd.input.Environment as Fn['Environment'];
          latest.RevisionId = `${latest.RevisionId}+config`;
          return { ...latest };
        default:
          throw new Error(`unexpected ${name}`);
      }
    },
  };
  return { client, sent, writes: () => sent.filter((s) => s.name.startsWith('Update')) };
}

function withClient(p: LambdaProvider, client: unknown): LambdaProvider {
  (p as unknown as { clients: Map<string, unknown> }).clients.set(t.region, client);
  return p;
}

const v1: Fn = { CodeSha256: sha(V1_ZIP), CodeSize: V1_ZIP.length, Environment: { Variables: { RELEASE_ID: 'r1', DB: SECRET } } };
const bad = (): Fn => ({
  CodeSha256: sha(Buffer.from('r2')),
  RevisionId: 'rev0',
  Environment: { Variables: { RELEASE_ID: 'r2', DB: SECRET } },
});
const fetchV1: CodeFetcher = async () => V1_ZIP;

test('matching $LATEST (env in another key order) is a no-op: reads only, no download', async () => {
  const fetched: string[] = [];
  const lambda = fakeLambda(v1, { CodeSha256: v1.CodeSha256, Environment: { Variables: { DB: SECRET, RELEASE_ID: 'r1' } } });
  const p = withClient(new LambdaProvider({ fetchCode: async (r) => (fetched.push(r.location), V1_ZIP) }), lambda.client);
  expect(await p.restoreLatest(t, '1')).toEqual({ changed: false });
  expect(lambda.sent.map((s) => s.name).sort()).toEqual(['GetFunction', 'GetFunctionConfiguration']);
  expect(fetched).toEqual([]);
});

test('code then env, each with the RevisionId $LATEST had just before', async () => {
  const lambda = fakeLambda(v1, bad());
  const p = withClient(new LambdaProvider({ fetchCode: fetchV1 }), lambda.client);
  expect(await p.restoreLatest(t, '1')).toEqual({ changed: true });
  expect(lambda.writes().map((w) => [w.name, w.input.RevisionId])).toEqual([
    ['UpdateFunctionCode', 'rev0'],
    ['UpdateFunctionConfiguration', 'rev0+code'],
  ]);
  expect(lambda.writes()[1].input.Environment).toEqual({ Variables: { RELEASE_ID: 'r1', DB: SECRET } });
});

test("a version without environment clears $LATEST's", async () => {
  const lambda = fakeLambda({ ...v1, Environment: undefined }, { ...bad(), CodeSha256: v1.CodeSha256 });
  const p = withClient(new LambdaProvider({ fetchCode: fetchV1 }), lambda.client);
  expect(await p.restoreLatest(t, '1')).toEqual({ changed: true });
  expect(lambda.writes().map((w) => [w.name, w.input.Environment])).toEqual([['UpdateFunctionConfiguration', { Variables: {} }]]);
});

test.each([
  ['VersionEnvironmentUnreadable', { ...v1, Environment: { Error: { ErrorCode: 'KMSAccessDenied', Message: 'no' } } }],
  ['ImagePackageUnsupported', { ...v1, PackageType: 'Image' }],
  ['CodeTooLargeForInlineUpload', { ...v1, CodeSize: 60 * 1024 * 1024 }],
])('%s: refused before any write or download', async (code, version) => {
  let fetched = 0;
  const lambda = fakeLambda(version as Fn, bad());
  const p = withClient(new LambdaProvider({ fetchCode: async () => (fetched++, V1_ZIP) }), lambda.client);
  const err = (await p.restoreLatest(t, '1').catch((e: Error) => e)) as NonRetryableProviderError;
  expect(err).toBeInstanceOf(NonRetryableProviderError);
  expect(err.code).toBe(code);
  expect(lambda.writes()).toEqual([]);
  expect(fetched).toBe(0);
});

test('a retryable SDK error keeps its name and HTTP status, never its message', async () => {
  const throttled = Object.assign(new Error(`Rate exceeded for DB=${SECRET}`), {
    name: 'TooManyRequestsException',
    $metadata: { httpStatusCode: 429 },
  });
  const lambda = fakeLambda(v1, bad(), (n) => (n === 'UpdateFunctionCode' ? throttled : undefined));
  const p = withClient(new LambdaProvider({ fetchCode: fetchV1 }), lambda.client);
  const err = (await p.restoreLatest(t, '1').catch((e: Error) => e)) as Error;
  expect(err).not.toBeInstanceOf(NonRetryableProviderError);
  expect(err.name).toBe('TooManyRequestsException');
  expect(err.message).toBe(
    'eu: restoring $LATEST of lambda eu-west-1/fn to version 1 failed at UpdateFunctionCode: TooManyRequestsException (HTTP 429)',
  );
  expect(JSON.stringify({ m: err.message, s: err.stack })).not.toContain(SECRET);
});

test('the deadline bounds the waits: no wait starts past it', async () => {
  const lambda = fakeLambda(v1, bad());
  const p = withClient(new LambdaProvider({ fetchCode: fetchV1, restoreTimeoutMs: 1000 }), lambda.client);
  const err = (await p.restoreLatest(t, '1').catch((e: Error) => e)) as Error;
  expect(err.name).toBe('TimeoutError');
  expect(err.message).toMatch(/failed at wait after UpdateFunctionCode: TimeoutError$/);
  expect(lambda.writes().map((w) => w.name)).toEqual(['UpdateFunctionCode']);
});

describe('the default download (HTTP GET of Code.Location)', () => {
  let server: Server;
  let base = '';
  const served = { status: 200, body: V1_ZIP };
  beforeAll(async () => {
    server = createServer((_req, res) => {
      res.writeHead(served.status);
      res.end(served.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => new Promise<void>((r) => server.close(() => r())));

  function lambdaAt(location: string) {
    const lambda = fakeLambda(v1, bad());
    const send = lambda.client.send;
    lambda.client.send = async (cmd) => {
      const out = (await send(cmd)) as { Code?: { Location: string } };
      if (out?.Code) out.Code.Location = location;
      return out;
    };
    return lambda;
  }

  test('downloads, checks and uploads the zip', async () => {
    Object.assign(served, { status: 200, body: V1_ZIP });
    const lambda = lambdaAt(`${base}/v1?X-Amz-Signature=abc`);
    expect(await withClient(new LambdaProvider(), lambda.client).restoreLatest(t, '1')).toEqual({ changed: true });
    expect(Buffer.from(lambda.writes()[0].input.ZipFile as Uint8Array)).toEqual(V1_ZIP);
  });

  test('an HTTP error is retryable and names the status, not the presigned URL', async () => {
    Object.assign(served, { status: 403, body: Buffer.from('<Error>AccessDenied</Error>') });
    const lambda = lambdaAt(`${base}/v1?X-Amz-Signature=abc`);
    const err = (await withClient(new LambdaProvider(), lambda.client)
      .restoreLatest(t, '1')
      .catch((e: Error) => e)) as Error;
    expect(err).not.toBeInstanceOf(NonRetryableProviderError);
    expect(err.message).toMatch(/failed at download: CodeDownloadFailed \(the version's code could not be downloaded, HTTP 403\)$/);
    expect(err.message).not.toContain('Signature');
    expect(lambda.writes()).toEqual([]);
  });

  test("more bytes than the version's CodeSize, or other bytes, are refused", async () => {
    Object.assign(served, { status: 200, body: Buffer.concat([V1_ZIP, Buffer.from('!')]) });
    const e1 = (await withClient(new LambdaProvider(), lambdaAt(`${base}/v1`).client)
      .restoreLatest(t, '1')
      .catch((e: Error) => e)) as NonRetryableProviderError;
    expect(e1.code).toBe('CodeSizeMismatch');
    Object.assign(served, { status: 200, body: Buffer.from('zip of version 2') });
    const e2 = (await withClient(new LambdaProvider(), lambdaAt(`${base}/v1`).client)
      .restoreLatest(t, '1')
      .catch((e: Error) => e)) as NonRetryableProviderError;
    expect(e2.code).toBe('CodeSha256Mismatch');
  });
});
