/**
 * Codec server for the Temporal Web UI and `temporal` CLI (`--codec-endpoint`): POST /encode and
 * POST /decode take and return `{ "payloads": [ { "metadata": { k: base64 }, "data": base64 } ] }`
 * (the proto3 JSON form of Payload). CORS lets the UI's origin call it from the browser, including
 * the preflight (OPTIONS) for the `authorization`, `content-type` and `x-namespace` headers the UI
 * sends. Only the configured origins get a CORS grant (with credentials); a `*` entry grants any
 * origin *without* credentials, never the origin reflected with `Access-Control-Allow-Credentials`.
 *
 * Every POST needs a credential, else 401: `Authorization: Bearer <ROLLGATE_CODEC_TOKEN>` (a static
 * token, for the `temporal` CLI's `--codec-auth`), or, with an identity verifier (ROLLGATE_OIDC_*,
 * the worker's), a JWT it verifies: in `Authorization: Bearer` (what the Temporal UI forwards with
 * `codec.passAccessToken` and an https endpoint) or in the `rollgate_codec_token` cookie (what a
 * browser sends with the UI's "include cross-origin credentials"). See docs/security-identities.md
 * for what the UI actually sends.
 *
 * Environment: the codec keys (see ./codec.ts), ROLLGATE_CODEC_TOKEN and/or ROLLGATE_OIDC_*,
 * ROLLGATE_CODEC_SERVER_ADDRESS (host:port, default 127.0.0.1:8089),
 * ROLLGATE_CODEC_CORS_ORIGINS (comma-separated UI origins, default http://localhost:8233,http://127.0.0.1:8233).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { codecFromEnv } from './codec';
import { IdentityRefusedError, identityVerifierFromEnv, type IdentityVerifier } from '../identity/verifier';

/** The cookie a browser may carry the user's JWT in (sent by the UI with includeCredentials). */
export const CODEC_TOKEN_COOKIE = 'rollgate_codec_token';

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** A static bearer token /encode and /decode accept (the `temporal` CLI's --codec-auth). */
  token?: string;
  /** Verifies users' JWTs (Authorization: Bearer, or the rollgate_codec_token cookie). */
  verifier?: IdentityVerifier;
  /** Origins allowed to call from a browser (the Temporal UI), e.g. `http://localhost:8233`; `*`: any origin, without credentials. */
  corsOrigins: string[];
  /** Sees every request's method, path and headers (tests record what the UI sends). */
  onRequest?: (r: { method: string; path: string; headers: IncomingMessage['headers'] }) => void;
  host?: string;
  port?: number;
  /** Largest request body accepted (bytes). */
  maxBodyBytes?: number;
}

export interface CodecServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

const ALLOWED_HEADERS = 'authorization, content-type, x-namespace';
const DEFAULT_MAX_BODY = 16 * 1024 * 1024;

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

export function payloadFromJson(p: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))])),
    data: new Uint8Array(Buffer.from(p.data ?? '', 'base64')),
  };
}

export function payloadToJson(p: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(
      Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')]),
    ),
    data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
  };
}

const digest = (s: string) => createHash('sha256').update(s).digest();

function cookiesOf(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), decodeURIComponent(part.slice(i + 1).trim()));
  }
  return out;
}

export async function startCodecServer(o: CodecServerOptions): Promise<CodecServer> {
  if (!o.token && !o.verifier)
    throw new Error('the codec server needs a token (ROLLGATE_CODEC_TOKEN) or an identity verifier (ROLLGATE_OIDC_*)');
  const expected = o.token ? digest(`Bearer ${o.token}`) : undefined;
  const maxBody = o.maxBodyBytes ?? DEFAULT_MAX_BODY;

  /** Undefined when the request may decode/encode, else the reason for the 401 (never the credential itself). */
  const refusal = async (req: IncomingMessage): Promise<string | undefined> => {
    const auth = req.headers.authorization ?? '';
    if (expected && timingSafeEqual(digest(auth), expected)) return undefined;
    if (!o.verifier) return 'missing or wrong Authorization: Bearer token';
    const candidates = [/^Bearer\s+(\S+)$/i.exec(auth)?.[1], cookiesOf(req.headers.cookie).get(CODEC_TOKEN_COOKIE)].filter(
      (t): t is string => !!t && t !== 'undefined' && t !== 'null',
    );
    if (candidates.length === 0) return `no credential: send Authorization: Bearer <JWT> or the ${CODEC_TOKEN_COOKIE} cookie`;
    let reason = '';
    for (const t of candidates) {
      try {
        await o.verifier.verify(t);
        return undefined;
      } catch (err) {
        if (!(err instanceof IdentityRefusedError)) return `cannot check the token now: ${(err as Error).message}`;
        reason = err.message;
      }
    }
    return `token refused: ${reason}`;
  };

  const cors = (req: IncomingMessage, res: ServerResponse) => {
    const origin = req.headers.origin;
    if (!origin) return;
    res.setHeader('Vary', 'Origin');
    if (o.corsOrigins.includes(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
    } else if (o.corsOrigins.includes('*')) {
      // Any origin may call, but never with the browser's credentials (cookies) attached.
      res.setHeader('Access-Control-Allow-Origin', '*');
    }
  };
  const send = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  const server = createServer((req, res) => {
    cors(req, res);
    const path = (req.url ?? '/').split('?')[0];
    o.onRequest?.({ method: req.method ?? '', path, headers: req.headers });
    if (req.method === 'OPTIONS') {
      // Preflight: browsers send no Authorization here, so it is never required.
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', ALLOWED_HEADERS);
      res.setHeader('Access-Control-Max-Age', '600');
      res.writeHead(204);
      return res.end();
    }
    if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
    if (path !== '/encode' && path !== '/decode') return send(res, 404, { message: 'not found: use POST /encode or POST /decode' });
    if (req.method !== 'POST') return send(res, 405, { message: `${req.method} not allowed: use POST` });
    void refusal(req).then((refused) => {
      if (refused) {
        res.setHeader('WWW-Authenticate', 'Bearer');
        req.resume(); // drain the body
        return send(res, 401, { message: refused });
      }
      serve(req, res, path);
    });
  });

  const serve = (req: IncomingMessage, res: ServerResponse, path: string) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBody) tooBig = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (tooBig) return send(res, 413, { message: `body larger than ${maxBody} bytes` });
      let payloads: Payload[];
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { payloads?: JsonPayload[] };
        if (!Array.isArray(body?.payloads)) throw new Error('expected {"payloads": [...]}');
        payloads = body.payloads.map(payloadFromJson);
      } catch (err) {
        return send(res, 400, { message: `bad request: ${(err as Error).message}` });
      }
      const op = path === '/encode' ? o.codec.encode(payloads) : o.codec.decode(payloads);
      op.then(
        (out) => send(res, 200, { payloads: out.map(payloadToJson) }),
        (err: Error) => send(res, 400, { message: err.message }),
      );
    });
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as { address: string; port: number };
  const host = addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    server,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export function codecServerOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): CodecServerOptions {
  const codec = codecFromEnv(env);
  if (!codec) throw new Error('the codec server needs ROLLGATE_CODEC_KEY and ROLLGATE_CODEC_KEY_ID');
  const token = env.ROLLGATE_CODEC_TOKEN?.trim() || undefined;
  // The same verifier as the worker's (a half-configured one is refused here too, naming the variable).
  const verifier = identityVerifierFromEnv(env);
  if (!token && !verifier)
    throw new Error(
      'the codec server needs ROLLGATE_CODEC_TOKEN (a static Bearer token) or an identity verifier (ROLLGATE_OIDC_ISSUER, ROLLGATE_OIDC_AUDIENCE, ROLLGATE_OIDC_JWKS_URL)',
    );
  const address = env.ROLLGATE_CODEC_SERVER_ADDRESS || '127.0.0.1:8089';
  const i = address.lastIndexOf(':');
  return {
    codec,
    ...(token ? { token } : {}),
    ...(verifier ? { verifier } : {}),
    host: address.slice(0, i).replace(/^\[|\]$/g, ''),
    port: Number(address.slice(i + 1)),
    corsOrigins: (env.ROLLGATE_CODEC_CORS_ORIGINS || 'http://localhost:8233,http://127.0.0.1:8233')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  };
}

/** `rollgate codec-server` (or `node dist/temporal/codec-server.js`): serve until SIGINT/SIGTERM. */
export async function runCodecServerFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<CodecServer> {
  const s = await startCodecServer(codecServerOptionsFromEnv(env));
  console.error(`rollgate codec-server: listening on ${s.url} (POST /encode, /decode)`);
  const stop = () => void s.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return s;
}

if (require.main === module) {
  runCodecServerFromEnv().catch((err) => {
    console.error(`rollgate codec-server: ${(err as Error).message}`);
    process.exit(1);
  });
}
