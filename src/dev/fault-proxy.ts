/**
 * Dev/test only: a small reverse proxy in front of moto that records every call and injects faults
 * moto cannot produce (throttling, 5xx, conflicts, stale revisions, slow answers).
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';

export interface RecordedCall {
  method: string;
  path: string;
  /** X-Amz-Target header (JSON protocols), if any. */
  target?: string;
  atMs: number;
}

export type FaultAction =
  /** An error answer; `afterMs`: sent that late (a slow failing service: the attempt is in flight meanwhile). */
  | { status: number; errorType?: string; message?: string; body?: string; afterMs?: number }
  | { delayMs: number }
  | { respond: (req: IncomingMessage, body: Buffer) => { status: number; headers?: Record<string, string>; body: string } };

export interface FaultRule {
  /** `body`: the request's body, for rules that tell calls of one operation apart (a query's statistic). */
  match: (call: RecordedCall, body: Buffer) => boolean;
  /** How many matching calls to affect (default 1). */
  times?: number;
  action: FaultAction;
}

/** Sees every forwarded call with its request body once upstream has answered (dev/test: which writes landed, and when). */
export type CallObserver = (call: RecordedCall, body: Buffer, status: number) => void;

export class FaultProxy {
  readonly calls: RecordedCall[] = [];
  /** Called for every call forwarded to upstream, when its answer arrives (injected faults are not forwarded). */
  readonly observers: CallObserver[] = [];
  private rules: (FaultRule & { left: number })[] = [];
  private server?: Server;
  private held = new Set<() => void>();
  private stopped = false;
  url = '';

  constructor(private readonly upstream: string) {}

  async start(): Promise<this> {
    const up = new URL(this.upstream);
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', async () => {
        const body = Buffer.concat(chunks);
        const call: RecordedCall = {
          method: req.method ?? 'GET',
          path: decodeURIComponent(req.url ?? '/'),
          target: req.headers['x-amz-target'] as string | undefined,
          atMs: Date.now(),
        };
        this.calls.push(call);
        const rule = this.rules.find((r) => r.left > 0 && r.match(call, body));
        if (rule) {
          rule.left--;
          const a = rule.action;
          if ('delayMs' in a) {
            await this.hold(a.delayMs);
            // Stopped while held: the caller gets no answer (as from a proxy that went away).
            if (this.stopped) return res.destroy();
          } else if ('respond' in a) {
            const out = a.respond(req, body);
            res.writeHead(out.status, { 'content-type': 'application/json', ...out.headers });
            return res.end(out.body);
          } else {
            if (a.afterMs) {
              await this.hold(a.afterMs);
              if (this.stopped) return res.destroy(); // as a held delay: no answer
            }
            res.writeHead(a.status, {
              'content-type': 'application/json',
              ...(a.errorType ? { 'x-amzn-errortype': a.errorType } : {}),
            });
            return res.end(a.body ?? JSON.stringify({ Type: 'User', message: a.message ?? 'injected fault', __type: a.errorType }));
          }
        }
        const fwd = httpRequest(
          { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: { ...req.headers, host: up.host } },
          (upRes) => {
            for (const o of this.observers) o(call, body, upRes.statusCode ?? 502);
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
          },
        );
        fwd.on('error', (err) => {
          res.writeHead(502);
          res.end(String(err));
        });
        fwd.end(body);
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
    return this;
  }

  inject(rule: FaultRule): void {
    this.rules.push({ ...rule, left: rule.times ?? 1 });
  }

  clearFaults(): void {
    this.rules = [];
  }

  count(match: (c: RecordedCall) => boolean): number {
    return this.calls.filter(match).length;
  }

  /** Waits `ms`, or until the proxy stops (a long hold must not keep a test's process alive). */
  private hold(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.held.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.held.add(done);
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const done of [...this.held]) done();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/** Lambda REST operations by path, for counting and fault matching. */
export const lambdaOp = {
  publishVersion: (fn?: string) => (c: RecordedCall) =>
    c.method === 'POST' && /\/functions\/([^/]+)\/versions$/.test(c.path.split('?')[0]) && (!fn || c.path.includes(`/functions/${fn}/`)),
  updateAlias: (fn?: string) => (c: RecordedCall) =>
    c.method === 'PUT' && /\/functions\/[^/]+\/aliases\/[^/]+$/.test(c.path.split('?')[0]) && (!fn || c.path.includes(`/functions/${fn}/`)),
  invoke: (fn?: string) => (c: RecordedCall) =>
    c.method === 'POST' && /\/functions\/[^/]+\/invocations/.test(c.path) && (!fn || c.path.includes(`/functions/${fn}/`)),
  updateCode: (fn?: string) => (c: RecordedCall) =>
    c.method === 'PUT' && /\/functions\/[^/]+\/code$/.test(c.path.split('?')[0]) && (!fn || c.path.includes(`/functions/${fn}/`)),
  any: (fn?: string) => (c: RecordedCall) => c.path.includes('/2015-03-31/functions') && (!fn || c.path.includes(`/functions/${fn}`)),
};
