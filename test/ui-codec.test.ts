/**
 * The Temporal UI with payload encryption on (issue 10, item 7): the dev server's UI
 * (`--ui-codec-endpoint`) decodes a rollout's user metadata through rollgate's codec server, which
 * verifies the user's JWT with the worker's verifier. The test records what the UI 2.54 really
 * sends (see docs/security-identities.md): with the dev server's settings it sends no credential
 * at all, so it gets nothing decoded; with the UI's "include cross-origin credentials" codec
 * setting the browser sends the `rollgate_codec_token` cookie, and only a valid token decodes.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { freePort, startTemporalDevServer, type DevServer } from '../src/dev/processes';
import { createRollgateWorker } from '../src/worker';
import { createRunnerWorker } from '../src/runner';
import { FileArtifactStore } from '../src/artifacts/store';
import { LambdaProvider } from '../src/providers/aws-lambda';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { startRollout } from '../src/client';
import { AesGcmPayloadCodec, dataConverterWithCodec } from '../src/temporal/codec';
import { CODEC_TOKEN_COOKIE, startCodecServer, type CodecServer } from '../src/temporal/codec-server';
import { createIdentityVerifier, verifierConfigFromEnv } from '../src/identity/verifier';
import { createFunctions, lambdaSpec, waitForStatus, type Harness } from './support/harness';
import { issuerEnv, startTestIssuer, type TestIssuer } from './support/oidc';

const CHROMIUM = process.env.ROLLGATE_CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];
const ARTIFACTS = resolve(__dirname, '..', 'test-artifacts');

interface Seen {
  method: string;
  path: string;
  origin?: string;
  authorization?: string;
  cookie?: string;
  namespace?: string;
}

let idp: TestIssuer;
let codecServer: CodecServer;
let server: DevServer;
let client: Client;
let nativeConnection: NativeConnection;
let worker: Worker;
let workerRun: Promise<void>;
let runner: Worker;
let runnerRun: Promise<void>;
let browser: Browser | undefined;
let handle: WorkflowHandle;
let service: string;
const seen: Seen[] = [];
const corsOrigins: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `Chromium not found at ${CHROMIUM}. Install Debian's package: \`apt-get update && apt-get install -y chromium\` (or set ROLLGATE_CHROMIUM_PATH).`,
    );
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // installed already in this module registry
  }
  idp = await startTestIssuer();
  const codec = new AesGcmPayloadCodec([{ id: 'ui-codec', key: randomBytes(32) }]);
  const dataConverter = dataConverterWithCodec(codec);
  codecServer = await startCodecServer({
    codec,
    verifier: createIdentityVerifier(verifierConfigFromEnv(issuerEnv(idp))!),
    corsOrigins,
    onRequest: ({ method, path, headers }) =>
      seen.push({
        method,
        path,
        origin: headers.origin,
        authorization: headers.authorization,
        cookie: headers.cookie,
        namespace: headers['x-namespace'] as string | undefined,
      }),
  });
  const uiPort = await freePort();
  corsOrigins.push(`http://127.0.0.1:${uiPort}`);
  server = await startTemporalDevServer({ ui: true, uiPort, uiCodecEndpoint: codecServer.url });
  nativeConnection = await NativeConnection.connect({ address: server.address });
  client = new Client({ connection: await Connection.connect({ address: server.address }), dataConverter });
  const motoUrl = process.env.ROLLGATE_TEST_MOTO!;
  const workDir = join(process.env.ROLLGATE_TEST_STATE!, `ui-codec-${randomBytes(3).toString('hex')}`);
  mkdirSync(workDir, { recursive: true });
  worker = await createRollgateWorker({
    connection: nativeConnection,
    taskQueue: 'ui-codec',
    deps: {
      providers: { 'aws-lambda': new LambdaProvider({ endpoint: motoUrl, credentials: TEST_CREDENTIALS, maxAttempts: 4 }) },
      metrics: [new CloudWatchMetrics({ endpoint: motoUrl, credentials: TEST_CREDENTIALS })],
      stateDir: workDir,
      hashKey: 'ui-codec',
      client,
    },
    workflowBundlePath: process.env.ROLLGATE_TEST_BUNDLE,
    workerOptions: { dataConverter },
  });
  workerRun = worker.run();
  runner = await createRunnerWorker({
    connection: nativeConnection,
    taskQueue: 'ui-codec-runner',
    deps: { stateDir: join(workDir, 'runner'), artifactStore: new FileArtifactStore(join(workDir, 'artifacts')) },
    workerOptions: { dataConverter },
  });
  runnerRun = runner.run();

  const fake = { workDir, motoUrl, webhook: { url: 'http://127.0.0.1:9/unused' } } as unknown as Harness;
  service = `uicodec-${randomBytes(2).toString('hex')}`;
  const spec = lambdaSpec(
    fake,
    service,
    { waves: [], notify: undefined, canary: { targets: ['us-east-1'], weight: 10, bake: '10 minutes' } },
    1,
  );
  await createFunctions(fake, spec);
  handle = await startRollout(client, spec, { startedBy: 'ui-codec-test', taskQueue: 'ui-codec', runnerTaskQueue: 'ui-codec-runner' });
  await waitForStatus(handle, (s) => s.stage === 'canary' && s.bakeEndsAtMs !== undefined, 90_000, 'canary bake');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});

afterAll(async () => {
  await browser?.close();
  await handle?.terminate('ui-codec test done').catch(() => undefined);
  if (worker?.getState() === 'RUNNING') worker.shutdown();
  await workerRun?.catch(() => undefined);
  if (runner?.getState() === 'RUNNING') runner.shutdown();
  await runnerRun?.catch(() => undefined);
  await client?.connection.close();
  await nativeConnection?.close();
  await server?.stop();
  await codecServer?.close();
  await idp?.close();
});

/** A fresh browser profile; `token` goes into the codec server's cookie and the UI is told to include credentials. */
async function contextWith(token?: string): Promise<BrowserContext> {
  const context = await browser!.newContext({ viewport: { width: 1400, height: 1000 } });
  if (token !== undefined) {
    await context.addCookies([{ name: CODEC_TOKEN_COOKIE, value: token, url: codecServer.url, httpOnly: true, sameSite: 'Strict' }]);
    // The UI's own codec settings (Settings → Codec Server: "include cross-origin credentials"), kept in localStorage.
    const endpoint = codecServer.url;
    await context.addInitScript((e) => {
      (globalThis as unknown as { localStorage: { setItem(k: string, v: string): void } }).localStorage.setItem(
        'overrideRemoteCodecConfiguration',
        'true',
      );
      (globalThis as unknown as { localStorage: { setItem(k: string, v: string): void } }).localStorage.setItem(
        'endpoint',
        JSON.stringify(e),
      );
      (globalThis as unknown as { localStorage: { setItem(k: string, v: string): void } }).localStorage.setItem(
        'includeCredentials',
        'true',
      );
    }, endpoint);
  }
  return context;
}

/** Opens the rollout's User Metadata tab; answers the codec server's statuses for the UI's /decode calls. */
async function openMetadata(page: Page): Promise<number[]> {
  const statuses: number[] = [];
  page.on('response', (r) => {
    if (r.url().startsWith(`${codecServer.url}/decode`) && r.request().method() === 'POST') statuses.push(r.status());
  });
  await page.goto(`${server.uiUrl}/namespaces/default/workflows/${handle.workflowId}`);
  await page.getByTestId('user-metadata-tab').click({ timeout: 30_000 });
  return statuses;
}

async function allText(page: Page): Promise<string> {
  const texts = await Promise.all(
    page.frames().map((f) =>
      f
        .locator('body')
        .innerText()
        .catch(() => ''),
    ),
  );
  return texts.join('\n');
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, name), fullPage: true });
}

async function until(ok: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('the dev server UI sends no credential to the codec endpoint, so it gets nothing decoded', async () => {
  const context = await contextWith();
  const page = await context.newPage();
  try {
    const from = seen.length;
    const statuses = await openMetadata(page);
    await until(() => statuses.length > 0, 'a /decode call from the UI');
    await new Promise((r) => setTimeout(r, 2000));
    const calls = seen.slice(from).filter((s) => s.method === 'POST' && s.path === '/decode');
    // What UI 2.54 sends with the dev server's settings: an Origin, X-Namespace, and no credential.
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls)
      expect(c).toMatchObject({ origin: corsOrigins[0], namespace: 'default', authorization: undefined, cookie: undefined });
    expect(statuses.every((s) => s === 401)).toBe(true);
    const text = await allText(page);
    expect(text).not.toContain(`rollout ${service} r2`);
    expect(text).not.toContain('started by');
    await shot(page, 'ui-codec-no-token.png');
  } finally {
    await context.close();
  }
});

test('an expired token in the cookie decodes nothing; a valid one shows the decoded summary and details', async () => {
  const expired = await contextWith(await idp.token('erin', { expiresIn: -120 }));
  const page1 = await expired.newPage();
  try {
    const from = seen.length;
    const statuses = await openMetadata(page1);
    await until(() => statuses.length > 0, 'a /decode call with the expired cookie');
    await new Promise((r) => setTimeout(r, 2000));
    const calls = seen.slice(from).filter((s) => s.method === 'POST' && s.path === '/decode');
    expect(calls.every((c) => c.cookie?.includes(`${CODEC_TOKEN_COOKIE}=`) && c.authorization === undefined)).toBe(true);
    expect(statuses.every((s) => s === 401)).toBe(true);
    expect(await allText(page1)).not.toContain(`rollout ${service} r2`);
  } finally {
    await expired.close();
  }

  const valid = await contextWith(await idp.token('erin'));
  const page = await valid.newPage();
  try {
    const statuses = await openMetadata(page);
    const summary = page.frameLocator('#user-metadata-summary');
    await summary.getByText(`rollout ${service} r2`).waitFor({ timeout: 30_000 });
    const details = page.frameLocator('#user-metadata-details');
    await details.getByText('started by').waitFor({ timeout: 20_000 });
    expect(await details.locator('body').innerText()).toMatch(/release\s+r2 \(schema_rev 7, index idx-abc\)/);
    expect(statuses).toContain(200);
    await shot(page, 'ui-codec-decoded.png');
  } catch (err) {
    await shot(page, 'ui-codec-failure.png').catch(() => undefined);
    throw err;
  } finally {
    await valid.close();
  }
});
