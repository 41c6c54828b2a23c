/**
 * The Temporal Web UI shows a running rollout: this file starts its own dev server with the UI,
 * runs a rollout that sits in a long canary bake, and drives headless Chromium (Debian's
 * `chromium` through playwright-core) to filter the list by `RolloutService = "..."`, open the
 * rollout and read its static summary and current details. Screenshot: test-artifacts/ui-rollout.png.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { startTemporalDevServer, type DevServer } from '../src/dev/processes';
import { createRollgateWorker } from '../src/worker';
import { createRunnerWorker } from '../src/runner';
import { FileArtifactStore } from '../src/artifacts/store';
import { LambdaProvider } from '../src/providers/aws-lambda';
import { CloudWatchMetrics } from '../src/analysis/cloudwatch';
import { TEST_CREDENTIALS } from '../src/dev/lambda-fixtures';
import { startRollout } from '../src/client';
import { createFunctions, lambdaSpec, waitForStatus, type Harness } from './support/harness';

const CHROMIUM = process.env.ROLLGATE_CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const ARTIFACTS = resolve(__dirname, '..', 'test-artifacts');

let server: DevServer;
let client: Client;
let nativeConnection: NativeConnection;
let worker: Worker;
let workerRun: Promise<void>;
let runner: Worker;
let runnerRun: Promise<void>;
let browser: Browser | undefined;
let workDir: string;
const handles: WorkflowHandle[] = [];

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
  server = await startTemporalDevServer({ ui: true });
  nativeConnection = await NativeConnection.connect({ address: server.address });
  client = new Client({ connection: await Connection.connect({ address: server.address }) });
  const motoUrl = process.env.ROLLGATE_TEST_MOTO!;
  workDir = join(process.env.ROLLGATE_TEST_STATE!, `ui-${randomBytes(3).toString('hex')}`);
  mkdirSync(workDir, { recursive: true });
  worker = await createRollgateWorker({
    connection: nativeConnection,
    taskQueue: 'ui-test',
    deps: {
      providers: { 'aws-lambda': new LambdaProvider({ endpoint: motoUrl, credentials: TEST_CREDENTIALS, maxAttempts: 4 }) },
      metrics: [new CloudWatchMetrics({ endpoint: motoUrl, credentials: TEST_CREDENTIALS })],
      stateDir: workDir,
      hashKey: 'ui-test',
      client,
    },
    workflowBundlePath: process.env.ROLLGATE_TEST_BUNDLE,
  });
  workerRun = worker.run();
  // The runner for the rollouts' build stage (command activities are not on the worker).
  runner = await createRunnerWorker({
    connection: nativeConnection,
    taskQueue: 'ui-test-runner',
    deps: { stateDir: join(workDir, 'runner'), artifactStore: new FileArtifactStore(join(workDir, 'artifacts')) },
  });
  runnerRun = runner.run();
});

afterAll(async () => {
  await browser?.close();
  for (const h of handles) await h.terminate('ui test done').catch(() => undefined);
  if (worker?.getState() === 'RUNNING') worker.shutdown();
  await workerRun?.catch(() => undefined);
  if (runner?.getState() === 'RUNNING') runner.shutdown();
  await runnerRun?.catch(() => undefined);
  await client?.connection.close();
  await nativeConnection?.close();
  await server?.stop();
});

/** Poll `read` until `ok` (the UI loads and refreshes asynchronously); a clear error otherwise. */
async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    last = await read();
    if (ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`UI: timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, name), fullPage: true });
}

test('the UI lists the rollout by RolloutService and shows its static summary and current details table', async () => {
  const motoUrl = process.env.ROLLGATE_TEST_MOTO!;
  const fake = { workDir, motoUrl, webhook: { url: 'http://127.0.0.1:9/unused' } } as unknown as Harness;
  const service = `uisvc-${randomBytes(2).toString('hex')}`;
  const spec = lambdaSpec(
    fake,
    service,
    { waves: [], notify: undefined, canary: { targets: ['us-east-1'], weight: 10, bake: '10 minutes' } },
    1,
  );
  await createFunctions(fake, spec);
  const handle = await startRollout(client, spec, { startedBy: 'ui-test', taskQueue: 'ui-test', runnerTaskQueue: 'ui-test-runner' });
  handles.push(handle);
  // A decoy rollout of another service (never picked up: nobody polls its queue) that the filter must hide.
  const decoySpec = lambdaSpec(fake, `decoy-${randomBytes(2).toString('hex')}`, { waves: [], notify: undefined }, 1);
  handles.push(await startRollout(client, decoySpec, { startedBy: 'ui-test', taskQueue: 'nobody-polls-this' }));
  await waitForStatus(handle, (s) => s.stage === 'canary' && s.bakeEndsAtMs !== undefined, 60_000, 'canary bake');

  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const rows = page.getByTestId('workflows-summary-configurable-table-row');
  try {
    await checkUi(page, rows, service, handle.workflowId, decoySpec.service);
  } catch (err) {
    await shot(page, 'ui-failure.png').catch(() => undefined);
    throw err;
  }
});

async function checkUi(page: Page, rows: Locator, service: string, workflowId: string, decoy: string): Promise<void> {
  // The list: both rollouts, until the search attribute query narrows it to the one service.
  await page.goto(`${server.uiUrl}/namespaces/default/workflows`);
  await until(
    () => rows.count(),
    (n) => n === 2,
    'both rollouts in the unfiltered list',
  );
  await page.getByTestId('toggle-manual-query').click();
  const queryBox = page.getByPlaceholder('Enter a query');
  await queryBox.fill(`RolloutService = "${service}"`);
  await queryBox.press('Enter');
  await page.waitForURL(/[?&]query=/, { timeout: 20_000 });
  expect(decodeURIComponent(new URL(page.url()).searchParams.get('query') ?? '')).toBe(`RolloutService = "${service}"`);
  await until(
    () => rows.count(),
    (n) => n === 1,
    'one row after filtering',
  );
  expect(await rows.first().innerText()).toContain(workflowId);
  expect(await page.getByText(decoy).count()).toBe(0);

  // The rollout: its timer summary on the timeline, then summary, details and current details.
  await rows.first().getByRole('link', { name: workflowId }).click();
  await page.waitForURL(new RegExp(`/workflows/${workflowId}/`), { timeout: 20_000 });
  await page.getByText('bake 10m at canary 10 %').first().waitFor({ timeout: 20_000 });
  await page.getByTestId('user-metadata-tab').click();
  const summary = page.frameLocator('#user-metadata-summary');
  await summary.getByText(`rollout ${service} r2`).waitFor({ timeout: 20_000 });
  const details = page.frameLocator('#user-metadata-details');
  await details.getByText('started by').waitFor();
  expect(await details.locator('body').innerText()).toMatch(/release\s+r2 \(schema_rev 7, index idx-abc\)/);
  const current = page.frameLocator('#user-metadata-current-details');
  await current.getByRole('table').waitFor();
  expect(await current.locator('body').innerText()).toMatch(/running\s+·\s+stage\s+canary\s+·\s+baking .* left: canary 10 %/);
  const headers = await current.getByRole('columnheader').allInnerTexts();
  expect(headers.map((x) => x.trim())).toEqual(['target', 'provider', 'stable', 'new', 'weight']);
  const cells = await current.getByRole('cell').allInnerTexts();
  expect(cells.map((x) => x.trim())).toEqual(['us-east-1', 'aws-lambda', '1', '2', '10 %']);
  // Readable columns: in every row, each cell's text ends well before the next cell's text begins
  // (the UI pads no table cell: "stablenewweight" ran together before the cells carried spaces).
  const gaps = await current.locator('tr').evaluateAll((rows) =>
    rows.map((row: any) => {
      const textBox = (cell: any) => {
        const text = cell.firstChild;
        const range = cell.ownerDocument.createRange();
        range.setStart(text, 0);
        range.setEnd(text, (text.textContent ?? '').trimEnd().length);
        return range.getBoundingClientRect();
      };
      const boxes = [...row.children].map(textBox);
      return boxes.slice(1).map((b: any, i: number) => Math.round(b.left - boxes[i].right));
    }),
  );
  expect(gaps).toHaveLength(2);
  for (const g of gaps.flat()) expect(g).toBeGreaterThanOrEqual(8);
  await shot(page, 'ui-rollout.png');
}
