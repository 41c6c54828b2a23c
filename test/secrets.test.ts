/**
 * Secrets never leak, on any path (issue 10, item 5), and the outbound URL policy (item 6),
 * against the real dev server, moto behind the fault proxy, a real runner and real HTTP.
 *
 * Every function carries secret values in its environment (one under a secret-looking name, one
 * under an innocent name but credential-shaped), the runner allow-lists a token for commands, and
 * the webhook URL (a worker variable, notify.webhook_env) has a secret path. Five rollouts: a happy
 * one, a breach, a failing deploy (LastUpdateStatus Failed, injected with the environment, a
 * reason quoting a secret and a presigned Code.Location), a failing command that prints the token,
 * and a custom check that answers with the secrets in its error body. Then every exported history,
 * every log line of the worker and runner, every received alert and `rollgate status --json` of
 * each rollout is scanned for every secret value: zero hits.
 */
import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import { startRollout } from '../src/client';
import { main } from '../src/cli/main';
import { setupObservabilityFromEnv, type Observability } from '../src/observability';
import { validateSpec } from '../src/spec/validate';
import type { RolloutSpec } from '../src/spec/schema';
import { abortSignal, statusQuery, type RolloutResult, type RolloutStatus } from '../src/contract';
import { historyText } from './support/history';
import { watchAliasWrites } from './support/lambda';
import { createFunctions, createHarness, lambdaSpec, simulateTraffic, TEST_WEBHOOK_ENV, type Harness } from './support/harness';

const rnd = (n: number) => randomBytes(n).toString('hex');
const FN_PASSWORD = `pw-${rnd(8)}`; // DB_PASSWORD: secret by its name
const FN_OPAQUE = `Q${rnd(10)}9z`; // UPSTREAM_CFG: an innocent name, a credential-shaped value
const RUNNER_TOKEN = `npm_${rnd(12)}`; // allow-listed on the runner, printed by a command
const WEBHOOK_PATH = `T0${rnd(6)}/B0${rnd(6)}`; // the webhook URL's secret part
const PRESIGNED = `IQoJb3JpZ2luX2VjE${rnd(10)}`; // X-Amz-Security-Token of an injected Code.Location
const SECRETS = { FN_PASSWORD, FN_OPAQUE, RUNNER_TOKEN, WEBHOOK_PATH, PRESIGNED };
const FN_ENV = { DB_PASSWORD: FN_PASSWORD, UPSTREAM_CFG: FN_OPAQUE, LOG_LEVEL: 'info' };

let h: Harness;
let obs: Observability;
const logLines: string[] = [];
let webhookUrl: string;
let check: Server;
let checkBase: string;
/** Answers per path; /kpi answers a number once (the preflight), then an error body quoting the secrets. */
const kpiCalls = new Map<string, number>();

beforeAll(async () => {
  // The Runtime logger of this process (worker and runner lines, the SDK's own "Activity failed" ones).
  obs = await setupObservabilityFromEnv(
    { ROLLGATE_LOG_LEVEL: 'DEBUG', ROLLGATE_METRICS_ADDRESS: 'off', ROLLGATE_SDK_METRICS_ADDRESS: 'off' },
    { write: (l) => void logLines.push(l) },
  );
  h = await createHarness('secrets', { runner: false });
  webhookUrl = `${h.webhook.url}/${WEBHOOK_PATH}`;
  await h.startWorker({ secretEnv: { [TEST_WEBHOOK_ENV]: webhookUrl } });
  await h.startRunner({ envAllow: ['NPM_TOKEN'], env: { ...process.env, NPM_TOKEN: RUNNER_TOKEN } });
  check = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/redirect-to-metadata') {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/' });
      return res.end();
    }
    const n = (kpiCalls.get(u.pathname) ?? 0) + 1;
    kpiCalls.set(u.pathname, n);
    if (n === 1) return res.end('0.01');
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`kpi store failed: connect DB_PASSWORD=${FN_PASSWORD} upstream ${FN_OPAQUE} token ${RUNNER_TOKEN}\nat handler`);
  });
  await new Promise<void>((r) => check.listen(0, '127.0.0.1', () => r()));
  checkBase = `http://127.0.0.1:${(check.address() as { port: number }).port}`;
  process.env.TEMPORAL_ADDRESS = process.env.ROLLGATE_TEST_TEMPORAL;
});

afterAll(async () => {
  check?.closeAllConnections();
  await new Promise<void>((r) => (check ? check.close(() => r()) : r()));
  await h?.close();
  await obs?.close();
});

/** Wait until the rollout closed or stopped on a human decision; abort an open one; its result. */
async function settle(handle: WorkflowHandle, timeoutMs = 150_000): Promise<RolloutResult> {
  const deadline = Date.now() + timeoutMs;
  const closed = handle.result() as Promise<RolloutResult>;
  let done: RolloutResult | undefined;
  void closed.then((r) => (done = r)).catch(() => undefined);
  while (!done && Date.now() < deadline) {
    const s = (await handle.query(statusQuery).catch(() => undefined)) as RolloutStatus | undefined;
    if (s && (s.state === 'paused' || s.state === 'rollback-failed')) {
      await new Promise((r) => setTimeout(r, 1500)); // let the alert go out
      await handle.signal(abortSignal, { by: 'secrets-test', reason: 'test finished' });
      break;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  return closed;
}

async function statusJson(id: string): Promise<string> {
  let out = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
  const l = jest.spyOn(console, 'log').mockImplementation((...a) => void (out += `${a.join(' ')}\n`));
  try {
    expect(await main(['status', id, '--json'])).toBe(0);
  } finally {
    o.mockRestore();
    l.mockRestore();
    process.exitCode = undefined;
  }
  return out;
}

function spec(service: string, over: Record<string, unknown> = {}): RolloutSpec {
  const base = lambdaSpec(h, service, {}, 1);
  return validateSpec({ ...JSON.parse(JSON.stringify(base)), waves: [], ...over });
}

/** Every secret found in a text, as "NAME in WHERE". */
function hits(text: string, where: string): string[] {
  return Object.entries(SECRETS)
    .filter(([, v]) => text.includes(v))
    .map(([k]) => `${k} in ${where}`);
}

test('a happy rollout, a breach, a failing deploy, command and custom check: no secret anywhere', async () => {
  const ids = `${rnd(2)}`;
  const results: Record<string, { handle: WorkflowHandle; result: RolloutResult }> = {};
  const run = async (name: string, s: RolloutSpec, bad?: (v: string) => boolean) => {
    await createFunctions(h, s, FN_ENV);
    const traffic = simulateTraffic(h, s, (_t, v) => bad?.(v) ?? false);
    try {
      const handle = await startRollout(h.client, s, { startedBy: 'carol', taskQueue: h.taskQueue });
      results[name] = { handle, result: await settle(handle) };
    } finally {
      traffic.stop();
    }
  };

  await run('happy', spec(`sec-happy-${ids}`));
  await run('breach', spec(`sec-breach-${ids}`), (v) => v !== '1');

  const failingDeploy = spec(`sec-deploy-${ids}`);
  const fn = failingDeploy.targets[0].provider === 'aws-lambda' ? failingDeploy.targets[0].function : '';
  h.proxy.inject({
    match: (c) => c.method === 'GET' && c.path === `/2015-03-31/functions/${fn}`,
    times: 1000,
    action: {
      respond: () => ({
        status: 200,
        body: JSON.stringify({
          Configuration: {
            FunctionName: fn,
            State: 'Active',
            LastUpdateStatus: 'Failed',
            LastUpdateStatusReason: `Lambda could not use DB_PASSWORD ${FN_PASSWORD}`,
            LastUpdateStatusReasonCode: 'InvalidConfiguration',
            Environment: { Variables: FN_ENV },
          },
          Code: {
            Location: `https://awslambda-us-east-1-tasks.s3.amazonaws.com/snapshots/x?X-Amz-Security-Token=${PRESIGNED}&X-Amz-Signature=ab12`,
          },
        }),
      }),
    },
  });
  try {
    await run('deploy', failingDeploy);
  } finally {
    h.proxy.clearFaults();
  }

  await run(
    'command',
    spec(`sec-command-${ids}`, {
      test: {
        command: [process.execPath, '-e', "console.log('publishing with', process.env.NPM_TOKEN); process.exitCode = 3"],
      },
    }),
  );

  await run(
    'check',
    spec(`sec-check-${ids}`, {
      rollback: {
        min_requests: 5,
        max_extensions: 1,
        custom_checks: [{ name: 'kpi', url: `${checkBase}/kpi-${ids}?rev={{revision}}`, threshold: 1, direction: 'higher-is-worse' }],
      },
    }),
  );

  const found: string[] = [];
  for (const [name, { handle }] of Object.entries(results)) {
    found.push(...hits(await historyText(handle), `history of ${name}`));
    found.push(...hits(await statusJson(handle.workflowId), `status --json of ${name}`));
  }
  found.push(...hits(logLines.join('\n'), 'worker/runner logs'));
  found.push(...hits(JSON.stringify(h.webhook.received), 'received alerts'));
  expect(found).toEqual([]);

  // Each path went the way it was meant to (so the scan above looked at real failures).
  expect(results.happy.result.state).toBe('succeeded');
  expect(results.breach.result.status.history.some((e) => /breach|fail/.test(e.text))).toBe(true);
  expect(['rolled-back', 'aborted', 'failed']).toContain(results.breach.result.state);
  const deployText = JSON.stringify(results.deploy.result.status);
  expect(deployText).toMatch(/the function update did not complete: LastUpdateStatus Failed, reason code InvalidConfiguration/);
  expect(results.command.result.status.failedStage).toBe('test');
  expect(JSON.stringify(results.command.result.status)).toMatch(/test command exited 3: publishing with \[redacted\]/);
  expect(JSON.stringify(results.check.result.status)).toMatch(
    /custom check kpi: no value \(HTTP 500: kpi store failed: connect DB_PASSWORD=\[redacted\]/,
  );
  expect(h.webhook.received.length).toBeGreaterThanOrEqual(4); // breach, deploy, command, check
  expect(logLines.some((l) => /Activity failed|failed/i.test(l) && l.includes('[redacted]'))).toBe(true);
  // The alerts did reach the secret URL: the webhook works, it just never shows.
  expect(webhookUrl).toContain(WEBHOOK_PATH);
}, 600_000);

test('outbound URL policy: a metadata address and a redirect to one are refused before traffic moves', async () => {
  const ids = rnd(2);
  // Validation refuses the metadata address naming the field; a worker refuses it too when a
  // program skips validation (the spec is mutated after it).
  expect(() =>
    spec(`sec-meta-${ids}`, {
      rollback: {
        custom_checks: [{ name: 'kpi', url: 'http://169.254.169.254/latest/meta-data/', threshold: 1, direction: 'higher-is-worse' }],
      },
    }),
  ).toThrow(/rollback\.custom_checks\[0\]\.url: 169\.254\.169\.254 is a metadata address/);
  const meta = spec(`sec-meta-${ids}`, {
    rollback: { custom_checks: [{ name: 'kpi', url: `${checkBase}/placeholder`, threshold: 1, direction: 'higher-is-worse' }] },
  });
  meta.rollback.custom_checks[0].url = 'http://169.254.169.254/latest/meta-data/iam/';
  const redirect = spec(`sec-redir-${ids}`, {
    rollback: { custom_checks: [{ name: 'kpi', url: `${checkBase}/redirect-to-metadata`, threshold: 1, direction: 'higher-is-worse' }] },
  });
  for (const [s, why] of [
    [meta, /custom check kpi preflight failed for us-east-1: .*169\.254\.169\.254 is a metadata address: always refused/],
    [
      redirect,
      /answered a redirect \(HTTP 302\) to http:\/\/169\.254\.169\.254\/latest\/meta-data\/iam\/security-credentials\/: redirects are not followed/,
    ],
  ] as const) {
    await createFunctions(h, s, FN_ENV);
    const aliases = watchAliasWrites(h.proxy);
    const handle = await startRollout(h.client, s, { startedBy: 'carol', taskQueue: h.taskQueue });
    const res = await settle(handle);
    expect(JSON.stringify(res.status.history)).toMatch(why);
    // No traffic moved (a revert may still write the alias: its fence mark).
    const fn = s.targets[0].provider === 'aws-lambda' ? s.targets[0].function : '';
    expect(aliases.forward(fn, '1')).toEqual([]);
    aliases.stop();
  }
}, 300_000);
