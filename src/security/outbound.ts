/**
 * Every outbound HTTP call rollgate makes to a URL it did not build itself (spec URLs: webhook,
 * custom checks, Prometheus; revision URLs of HTTP probes and synthetic traffic) goes through
 * `outboundRequest`:
 * - spec URLs must pass the UrlPolicy (src/security/url-policy.ts); provider-reported URLs
 *   (`policy` absent) get the hard refusals only;
 * - the host is resolved by the connection itself and refused when any address is link-local or a
 *   metadata endpoint (and loopback unless the policy allows loopback), so a DNS answer cannot
 *   swap the address between the check and the connect;
 * - redirects are never followed: a 3xx is an OutboundRefused naming where it pointed;
 * - the body is read up to `maxBodyBytes` and the rest dropped.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { bodyExcerpt } from './redact';
import { hardRefusal, isLoopbackHost, refusedAddress, type UrlPolicy } from './url-policy';

export class OutboundRefused extends Error {
  readonly code = 'OutboundRefused';
  constructor(message: string) {
    super(message);
    this.name = 'OutboundRefused';
  }
}

export interface OutboundOptions {
  method?: 'GET' | 'POST' | 'HEAD';
  headers?: Record<string, string>;
  body?: string;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Bytes of body kept (default 64 KiB). */
  maxBodyBytes?: number;
  /** The allow-list for spec URLs; absent for URLs a provider reported (hard refusals only). */
  policy?: UrlPolicy;
  /** A 3xx is never followed: `refuse` (default) throws OutboundRefused naming its Location, `return` answers it as is. */
  redirects?: 'refuse' | 'return';
  /** DNS lookup (tests inject answers); default node:dns lookup. */
  lookup?: (host: string, cb: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void;
}

export interface OutboundResponse {
  status: number;
  headers: Record<string, string>;
  text: string;
}

/** A URL as it may appear in a message: origin and path, no userinfo or query, redacted, bounded. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return bodyExcerpt(`${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`, 160);
  } catch {
    return bodyExcerpt(url.split(/[?#]/)[0], 160);
  }
}

/** Checks a URL against the policy (or the hard refusals); throws OutboundRefused naming it. */
export function checkOutboundUrl(url: string, policy?: UrlPolicy): URL {
  if (policy) {
    const c = policy.check(url);
    if (!c.ok) throw new OutboundRefused(`refused ${safeUrl(url)}: ${c.reason}`);
    return c.url;
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new OutboundRefused(`refused ${safeUrl(url)}: not a URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new OutboundRefused(`refused ${safeUrl(url)}: not http(s)`);
  const hard = hardRefusal(u);
  if (hard) throw new OutboundRefused(`refused ${safeUrl(url)}: ${hard}: always refused`);
  return u;
}

function guardedLookup(o: OutboundOptions): LookupFunction {
  const resolve = o.lookup ?? ((host, cb) => dnsLookup(host, { all: true }, cb));
  const loopbackOk = !o.policy || o.policy.allowsLoopback;
  return ((hostname: string, options: { all?: boolean }, cb: (...args: unknown[]) => void) => {
    resolve(hostname, (err, addresses) => {
      if (err) return cb(err);
      for (const a of addresses) {
        const why = refusedAddress(a.address);
        if (why) return cb(new OutboundRefused(`refused ${hostname}: it resolves to ${a.address}, a ${why}: always refused`));
        if (!loopbackOk && isLoopbackHost(a.address) && !isLoopbackHost(hostname))
          return cb(
            new OutboundRefused(`refused ${hostname}: it resolves to loopback ${a.address}, which ${o.policy!.source} does not allow`),
          );
      }
      if (!addresses.length) return cb(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }));
      if (options?.all) return cb(null, addresses);
      cb(null, addresses[0].address, addresses[0].family);
    });
  }) as unknown as LookupFunction;
}

/** One request under the outbound rules (see the file comment). Errors: OutboundRefused, TimeoutError, network errors. */
export async function outboundRequest(url: string, o: OutboundOptions): Promise<OutboundResponse> {
  const u = checkOutboundUrl(url, o.policy);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  // A literal address is not looked up: check it here (hard refusals were checked above).
  if (isIP(host) && o.policy && !o.policy.allowsLoopback && isLoopbackHost(host))
    throw new OutboundRefused(`refused ${safeUrl(url)}: loopback is not allowed by ${o.policy.source}`);
  const timeout = AbortSignal.timeout(o.timeoutMs);
  const signal = o.signal ? AbortSignal.any([o.signal, timeout]) : timeout;
  const max = o.maxBodyBytes ?? 64 * 1024;
  const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<OutboundResponse>((resolve, reject) => {
    const fail = (err: Error) => {
      if (timeout.aborted && !(err instanceof OutboundRefused))
        return reject(Object.assign(new Error(`timed out after ${o.timeoutMs} ms`), { name: 'TimeoutError' }));
      reject(err);
    };
    const req = send(u, { method: o.method ?? 'GET', headers: o.headers, signal, lookup: guardedLookup(o) }, (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      if (status >= 300 && status < 400 && o.redirects !== 'return') {
        res.resume();
        const location = headers.location ? safeUrl(new URL(headers.location, u).toString()) : 'no Location';
        return reject(
          new OutboundRefused(`${safeUrl(url)} answered a redirect (HTTP ${status}) to ${location}: redirects are not followed`),
        );
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        if (size >= max) return;
        chunks.push(c.subarray(0, max - size));
        size += c.length;
        if (size >= max) res.destroy();
      });
      const done = () => resolve({ status, headers, text: Buffer.concat(chunks).toString('utf8') });
      res.on('end', done);
      res.on('close', done); // destroyed after max bytes
      res.on('error', (err) => (size >= max ? done() : fail(err)));
    });
    req.on('error', fail);
    req.end(o.body);
  });
}
