/**
 * A test OIDC issuer on loopback: a JWKS served over real HTTP and tokens signed in the test with
 * jose (RS256). `forge` signs with a key the JWKS does not hold, under the same key id.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';

export interface TestIssuer {
  issuer: string;
  audience: string;
  jwksUrl: string;
  /** A valid token for `sub` (name claim `preferred_username` = sub unless given). */
  token(sub: string, o?: TokenOptions): Promise<string>;
  /** Same header and claims, signed with a key that is not in the JWKS. */
  forge(sub: string, o?: TokenOptions): Promise<string>;
  /** Requests the JWKS server saw. */
  requests: { url: string; headers: IncomingMessage['headers'] }[];
  close(): Promise<void>;
}

export interface TokenOptions {
  groups?: string[];
  name?: string;
  audience?: string;
  issuer?: string;
  /** Seconds from now (negative: already expired). Default 300. */
  expiresIn?: number;
  /** Seconds ago it was issued. Default 0. */
  issuedAgo?: number;
  extra?: JWTPayload;
}

export async function startTestIssuer(audience = 'rollgate'): Promise<TestIssuer> {
  const kid = 'test-key-1';
  const real = await generateKeyPair('RS256', { extractable: true });
  const foreign = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(real.publicKey)), kid, alg: 'RS256', use: 'sig' };
  const requests: TestIssuer['requests'] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ url: req.url ?? '', headers: req.headers });
    if (req.url !== '/jwks.json') {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const issuer = `${base}/`;
  const sign =
    (key: Parameters<SignJWT['sign']>[0]) =>
    async (sub: string, o: TokenOptions = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ preferred_username: o.name ?? sub, ...(o.groups ? { groups: o.groups } : {}), ...o.extra })
        .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
        .setSubject(`sub-${sub}`)
        .setIssuer(o.issuer ?? issuer)
        .setAudience(o.audience ?? audience)
        .setIssuedAt(now - (o.issuedAgo ?? 0))
        .setExpirationTime(now + (o.expiresIn ?? 300))
        .sign(key);
    };
  return {
    issuer,
    audience,
    jwksUrl: `${base}/jwks.json`,
    token: sign(real.privateKey),
    forge: sign(foreign.privateKey),
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

/** The worker environment for this issuer (names from the preferred_username claim). */
export function issuerEnv(i: TestIssuer): Record<string, string> {
  return {
    ROLLGATE_OIDC_ISSUER: i.issuer,
    ROLLGATE_OIDC_AUDIENCE: i.audience,
    ROLLGATE_OIDC_JWKS_URL: i.jwksUrl,
    ROLLGATE_OIDC_NAME_CLAIM: 'preferred_username',
  };
}
