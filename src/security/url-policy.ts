/**
 * The outbound URL policy for URLs a spec names (notify webhook, custom checks, Prometheus) and
 * the refusals every outbound call gets (HTTP probes and synthetic traffic too).
 *
 * Always refused, whatever the allow-list says: link-local addresses (169.254.0.0/16, fe80::/10,
 * which hold the cloud metadata endpoints), fd00:ec2::254 (AWS's IPv6 metadata endpoint), their
 * IPv4-mapped/NAT64 forms, and the metadata host names (metadata.google.internal, metadata.goog,
 * metadata, instance-data). src/security/outbound.ts also refuses a host name that *resolves* to
 * such an address, and never follows a redirect.
 *
 * ROLLGATE_ALLOWED_URLS (worker side) is a comma-separated list of entries:
 * - `https://host[:port]/path/prefix`: URLs with that scheme, host and port whose path starts
 *   with the prefix (at a `/` boundary: `https://h/api` allows `/api` and `/api/x`, not `/apix`);
 * - `host`, `host:port`, `*.example.com`: https URLs to that host (a `*.` pattern: any subdomain,
 *   not the domain itself), on port 443 unless a port is given; plain http needs a URL entry;
 * - `loopback`: http(s) on 127.0.0.0/8, ::1 and localhost, any port;
 * - `*`: any http(s) URL (the refusals above still apply).
 * Unset: `rollgate worker` allows none (every spec URL is refused, naming the variable); an
 * embedded worker (createRollgateWorker with ActivityDeps that give no urlPolicy: the demo, the
 * tests) allows `loopback` only.
 *
 * Pure (no Node APIs): the spec schema uses `hardRefusal` so `rollgate validate` refuses a
 * metadata URL naming its field.
 */

export const ALLOWED_URLS_VAR = 'ROLLGATE_ALLOWED_URLS';

const METADATA_HOSTS = new Set(['metadata.google.internal', 'metadata.goog', 'metadata', 'instance-data', 'instance-data.ec2.internal']);

/** 4 bytes of a dotted IPv4 address, or undefined. */
function parseIPv4(s: string): number[] | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const b = m.slice(1).map(Number);
  return b.every((x) => x <= 255) ? b : undefined;
}

/** 16 bytes of an IPv6 address (with or without brackets, with an embedded IPv4 tail), or undefined. */
function parseIPv6(s: string): number[] | undefined {
  let t = s.replace(/^\[|\]$/g, '').toLowerCase();
  const zone = t.indexOf('%');
  if (zone >= 0) t = t.slice(0, zone);
  if (!t.includes(':')) return undefined;
  let tail: number[] = [];
  const lastColon = t.lastIndexOf(':');
  const v4 = parseIPv4(t.slice(lastColon + 1));
  if (v4) {
    tail = v4;
    t = `${t.slice(0, lastColon + 1)}0:0`; // placeholder groups, replaced below
  }
  const halves = t.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string) => (h ? h.split(':') : []);
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - head.length - rest.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return undefined;
  const all = [...head, ...Array(missing).fill('0'), ...rest];
  if (!all.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return undefined;
  const bytes = all.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
  if (v4) bytes.splice(12, 4, ...tail);
  return bytes;
}

const isLinkLocal4 = (b: number[]) => b[0] === 169 && b[1] === 254;

/**
 * Why an IP address may never be called ("link-local", "metadata"), or undefined. Understands
 * IPv4, IPv6, IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) forms.
 */
export function refusedAddress(address: string): string | undefined {
  const v4 = parseIPv4(address);
  if (v4) return isLinkLocal4(v4) ? (v4[2] === 169 && v4[3] === 254 ? 'metadata address' : 'link-local address') : undefined;
  const v6 = parseIPv6(address);
  if (!v6) return undefined;
  if (v6[0] === 0xfe && (v6[1] & 0xc0) === 0x80) return 'link-local address';
  const fd00ec2 = [0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54];
  if (v6.every((x, i) => x === fd00ec2[i])) return 'metadata address';
  const zeros = (from: number, to: number) => v6.slice(from, to).every((x) => x === 0);
  const mapped = zeros(0, 10) && v6[10] === 0xff && v6[11] === 0xff;
  const nat64 = v6[0] === 0 && v6[1] === 0x64 && v6[2] === 0xff && v6[3] === 0x9b && zeros(4, 12);
  if ((mapped || nat64) && isLinkLocal4(v6.slice(12))) return refusedAddress(v6.slice(12).join('.'));
  return undefined;
}

/** Loopback: 127.0.0.0/8, ::1, the IPv4-mapped form, and localhost names. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const v4 = parseIPv4(h);
  if (v4) return v4[0] === 127;
  const v6 = parseIPv6(h);
  if (!v6) return false;
  if (v6.slice(0, 15).every((x) => x === 0) && v6[15] === 1) return true;
  return v6.slice(0, 10).every((x) => x === 0) && v6[10] === 0xff && v6[11] === 0xff && v6[12] === 127;
}

/** The refusal every outbound URL gets (a metadata or link-local host), or undefined. Host as URL.hostname gives it. */
export function hardRefusal(url: URL): string | undefined {
  const host = url.hostname.toLowerCase().replace(/\.$/, '');
  if (METADATA_HOSTS.has(host)) return `${host} is a cloud metadata host`;
  const why = refusedAddress(host);
  return why ? `${host} is a ${why}` : undefined;
}

type AllowEntry =
  | { kind: 'any'; raw: string }
  | { kind: 'loopback'; raw: string }
  | { kind: 'prefix'; raw: string; protocol: string; host: string; port: string; path: string }
  | { kind: 'host'; raw: string; host: string; wildcard: boolean; port: string };

const defaultPort = (protocol: string) => (protocol === 'https:' ? '443' : '80');

function parseEntry(raw: string, source: string): AllowEntry {
  if (raw === '*') return { kind: 'any', raw };
  if (raw === 'loopback') return { kind: 'loopback', raw };
  if (raw.includes('://')) {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new Error(`${source}: "${raw}" is not a URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`${source}: "${raw}" must be an http(s) URL`);
    if (u.username || u.password || u.search || u.hash)
      throw new Error(`${source}: "${raw}" must be scheme://host[:port]/path (no user, query or fragment)`);
    return { kind: 'prefix', raw, protocol: u.protocol, host: u.hostname, port: u.port || defaultPort(u.protocol), path: u.pathname };
  }
  const m = /^(\*\.)?([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?$/i.exec(raw);
  if (!m) throw new Error(`${source}: "${raw}" is not a host, host:port, *.domain, URL prefix, "loopback" or "*"`);
  return { kind: 'host', raw, wildcard: !!m[1], host: m[2].toLowerCase(), port: m[3] ?? '443' };
}

function entryAllows(e: AllowEntry, u: URL): boolean {
  const port = u.port || defaultPort(u.protocol);
  const host = u.hostname.toLowerCase();
  switch (e.kind) {
    case 'any':
      return true;
    case 'loopback':
      return isLoopbackHost(host);
    case 'prefix': {
      if (u.protocol !== e.protocol || host !== e.host || port !== e.port) return false;
      if (e.path === '/' || u.pathname === e.path) return true;
      const base = e.path.endsWith('/') ? e.path : `${e.path}/`;
      return u.pathname.startsWith(base);
    }
    case 'host':
      if (u.protocol !== 'https:' || port !== e.port) return false;
      return e.wildcard ? host.endsWith(`.${e.host}`) : host === e.host;
  }
}

export type UrlCheck = { ok: true; url: URL } | { ok: false; reason: string };

export class UrlPolicy {
  private constructor(
    private readonly entries: AllowEntry[],
    /** Where the list came from, for refusals ("ROLLGATE_ALLOWED_URLS", "the embedded default"). */
    readonly source: string,
  ) {}

  /** ROLLGATE_ALLOWED_URLS syntax (see the file comment); throws naming the bad entry. */
  static parse(list: string, source = ALLOWED_URLS_VAR): UrlPolicy {
    const entries = list
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
      .map((e) => parseEntry(e, source));
    return new UrlPolicy(entries, source);
  }

  /** `rollgate worker`: the variable, or (unset) nothing allowed. */
  static fromEnv(env: Record<string, string | undefined>): UrlPolicy {
    const v = env[ALLOWED_URLS_VAR];
    return v !== undefined && v.trim() !== '' ? UrlPolicy.parse(v) : new UrlPolicy([], `${ALLOWED_URLS_VAR} (unset: nothing allowed)`);
  }

  /** Embedded workers without a policy (demo, tests): loopback only. */
  static embeddedDefault(): UrlPolicy {
    return new UrlPolicy([{ kind: 'loopback', raw: 'loopback' }], `the embedded default (loopback only; set ActivityDeps.urlPolicy)`);
  }

  /** Whether some entry allows loopback hosts (a name that resolves to 127.0.0.1 is refused otherwise). */
  get allowsLoopback(): boolean {
    return this.entries.some(
      (e) => e.kind === 'any' || e.kind === 'loopback' || ((e.kind === 'prefix' || e.kind === 'host') && isLoopbackHost(e.host)),
    );
  }

  describe(): string {
    return this.entries.length ? this.entries.map((e) => e.raw).join(', ') : '(none)';
  }

  /** The URL if it is http(s), not a metadata/link-local host and on the allow-list; else why not. */
  check(url: string): UrlCheck {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return { ok: false, reason: 'not a URL' };
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return { ok: false, reason: `scheme ${u.protocol} is not http(s)` };
    const hard = hardRefusal(u);
    if (hard) return { ok: false, reason: `${hard}: always refused` };
    if (!this.entries.some((e) => entryAllows(e, u)))
      return { ok: false, reason: `${u.origin} is not allowed by ${this.source} (allowed: ${this.describe()})` };
    return { ok: true, url: u };
  }
}
