/**
 * Dev/test only: start a Prometheus-family binary (Prometheus, Alertmanager) on a free loopback
 * port with a config written into its own temp folder, and wait for its `/-/ready`. A lost port
 * race (another process took the free port first) is retried on a new port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes';

export interface ReadyDaemon {
  child: ChildProcess;
  url: string;
  port: number;
  dir: string;
  /** The last 4,000 characters it logged (for failure messages). */
  readonly log: string;
  /** SIGTERM (SIGKILL after 5 s), then remove its folder. */
  stop(): Promise<void>;
}

export async function startReadyDaemon(o: {
  /** Shown in errors ("prometheus did not become ready ..."). */
  name: string;
  bin: string;
  /** The config file's name and text, written into the daemon's folder. */
  config: { file: string; text: string };
  /** Its arguments, given the config path, its data folder and its port. */
  args: (p: { config: string; data: string; port: number }) => string[];
  startTimeoutMs?: number;
}): Promise<ReadyDaemon> {
  let lastErr: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), `rollgate-${o.name}-`));
    const config = join(dir, o.config.file);
    writeFileSync(config, o.config.text);
    const port = await freePort();
    const child = spawn(o.bin, o.args({ config, data: join(dir, 'data'), port }), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (b) => (out = (out + b).slice(-4000)));
    child.stderr!.on('data', (b) => (out = (out + b).slice(-4000)));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + (o.startTimeoutMs ?? 30_000);
    let ready = false;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        if ((await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) })).ok) {
          ready = true;
          break;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const stop = () =>
      new Promise<void>((res) => {
        const done = () => {
          rmSync(dir, { recursive: true, force: true });
          res();
        };
        if (child.exitCode !== null || child.signalCode !== null) return done();
        child.once('exit', done);
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      });
    if (!ready) {
      await stop();
      lastErr = new Error(`${o.name} did not become ready on ${url} (exit ${child.exitCode}): ${out.slice(-800)}`);
      if (/address already in use/.test(out)) continue; // lost the port race: try another one
      throw lastErr;
    }
    return {
      child,
      url,
      port,
      dir,
      get log() {
        return out;
      },
      stop,
    };
  }
  throw lastErr!;
}
