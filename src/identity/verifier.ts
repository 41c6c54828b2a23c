/**
 * Verified identities (issue 10, item 3): an OIDC/JWT verifier the worker (and the codec server)
 * checks bearer tokens with. Configured from the environment; a half-configured verifier is refused
 * at start, naming the missing variable. Without any ROLLGATE_OIDC_* variable there is no verifier
 * (the embedded default) and identities are the unverified names operators give with `--by`.
 */
import { readFileSync } from 'node:fs';
import type { JSONWebKeySet, JWTPayload } from 'jose';
import { durationMs } from '../spec/duration';

export interface VerifierConfig {
  issuer: string;
  audience: string;
  /** Where the signing keys are: an https (or loopback http) JWKS URL, or a JWKS file. */
  jwksUrl?: string;
  jwksFile?: string;
  /** The claim that names the person (default `sub`). */
  nameClaim: string;
  /** The claim with the person's groups, a list of strings or one space-separated string (default `groups`). */
  groupsClaim: string;
  /** Tokens issued longer ago than this are refused (default 1 hour; they travel in workflow history). */
  maxTokenAgeMs: number;
}

/** Who sent a message, as far as rollgate knows. `subject` is the token's `sub`, set only when verified. */
export interface VerifiedIdentity {
  name: string;
  subject: string;
  groups: string[];
}

/** A token refused, with the reason an operator can act on (never the token itself). */
export class IdentityRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdentityRefusedError';
  }
}

/** A verifier configuration that cannot work: names the variable. */
export class VerifierConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VerifierConfigError';
  }
}

export const VERIFIER_ENV = [
  'ROLLGATE_OIDC_ISSUER',
  'ROLLGATE_OIDC_AUDIENCE',
  'ROLLGATE_OIDC_JWKS_URL',
  'ROLLGATE_OIDC_JWKS_FILE',
  'ROLLGATE_OIDC_NAME_CLAIM',
  'ROLLGATE_OIDC_GROUPS_CLAIM',
  'ROLLGATE_OIDC_MAX_TOKEN_AGE',
] as const;

const DEFAULT_MAX_TOKEN_AGE_MS = 60 * 60 * 1000;

/** The verifier configuration in `env`, undefined when no ROLLGATE_OIDC_* variable is set; throws on a half-configured one. */
export function verifierConfigFromEnv(env: NodeJS.ProcessEnv = process.env): VerifierConfig | undefined {
  const set = VERIFIER_ENV.filter((k) => env[k]?.trim());
  if (set.length === 0) return undefined;
  const need = (k: string) => {
    const v = env[k]?.trim();
    if (!v)
      throw new VerifierConfigError(
        `${k} is not set, but ${set.join(', ')} ${set.length > 1 ? 'are' : 'is'}: set ${k} too, or unset them all (no verifier)`,
      );
    return v;
  };
  const issuer = need('ROLLGATE_OIDC_ISSUER');
  const audience = need('ROLLGATE_OIDC_AUDIENCE');
  const jwksUrl = env.ROLLGATE_OIDC_JWKS_URL?.trim() || undefined;
  const jwksFile = env.ROLLGATE_OIDC_JWKS_FILE?.trim() || undefined;
  if (!jwksUrl && !jwksFile)
    throw new VerifierConfigError(
      "ROLLGATE_OIDC_JWKS_URL is not set (nor ROLLGATE_OIDC_JWKS_FILE): the verifier needs the issuer's signing keys",
    );
  if (jwksUrl && jwksFile) throw new VerifierConfigError('ROLLGATE_OIDC_JWKS_URL and ROLLGATE_OIDC_JWKS_FILE are both set: choose one');
  if (jwksUrl) {
    let u: URL;
    try {
      u = new URL(jwksUrl);
    } catch {
      throw new VerifierConfigError(`ROLLGATE_OIDC_JWKS_URL is not a URL: ${jwksUrl}`);
    }
    const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback))
      throw new VerifierConfigError(`ROLLGATE_OIDC_JWKS_URL must be https:// (plain http only on loopback): ${jwksUrl}`);
  }
  let maxTokenAgeMs = DEFAULT_MAX_TOKEN_AGE_MS;
  const age = env.ROLLGATE_OIDC_MAX_TOKEN_AGE?.trim();
  if (age) {
    const ms = durationMs(age);
    if (ms === undefined || ms <= 0) throw new VerifierConfigError(`ROLLGATE_OIDC_MAX_TOKEN_AGE is not a duration: ${age} (e.g. 15m)`);
    maxTokenAgeMs = ms;
  }
  return {
    issuer,
    audience,
    jwksUrl,
    jwksFile,
    nameClaim: env.ROLLGATE_OIDC_NAME_CLAIM?.trim() || 'sub',
    groupsClaim: env.ROLLGATE_OIDC_GROUPS_CLAIM?.trim() || 'groups',
    maxTokenAgeMs,
  };
}

export interface IdentityVerifier {
  readonly config: VerifierConfig;
  verify(token: string): Promise<VerifiedIdentity>;
}

/** jose loads at the first token, not at start: a worker without ROLLGATE_OIDC_* never loads it. */
const loadJose = () => import('jose');
type Jose = Awaited<ReturnType<typeof loadJose>>;

export function createIdentityVerifier(config: VerifierConfig): IdentityVerifier {
  // The JWKS file is read now, so a missing or malformed one is refused at start.
  const jwks = config.jwksUrl ? undefined : readJwksFile(config.jwksFile!);
  let keys: ReturnType<Jose['createLocalJWKSet']> | ReturnType<Jose['createRemoteJWKSet']> | undefined;
  const keysOf = (jose: Jose) => (keys ??= jwks ? jose.createLocalJWKSet(jwks) : jose.createRemoteJWKSet(new URL(config.jwksUrl!)));
  return {
    config,
    async verify(token: string): Promise<VerifiedIdentity> {
      if (!token || !token.trim()) throw new IdentityRefusedError('no token was sent');
      const jose = await loadJose();
      let payload: JWTPayload;
      try {
        ({ payload } = await jose.jwtVerify(token.trim(), keysOf(jose), {
          issuer: config.issuer,
          audience: config.audience,
          maxTokenAge: `${Math.floor(config.maxTokenAgeMs / 1000)}s`,
          clockTolerance: 30,
        }));
      } catch (err) {
        throw refusalOf(err, config, jose.errors);
      }
      return identityOf(payload, config);
    },
  };
}

/** The verifier the environment asks for, or undefined when it asks for none. */
export function identityVerifierFromEnv(env: NodeJS.ProcessEnv = process.env): IdentityVerifier | undefined {
  const config = verifierConfigFromEnv(env);
  return config ? createIdentityVerifier(config) : undefined;
}

function readJwksFile(path: string): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new VerifierConfigError(`ROLLGATE_OIDC_JWKS_FILE ${path} cannot be read as JSON: ${(err as Error).message}`);
  }
  if (!parsed || !Array.isArray((parsed as JSONWebKeySet).keys))
    throw new VerifierConfigError(`ROLLGATE_OIDC_JWKS_FILE ${path} is not a JWKS (an object with "keys": [...])`);
  return parsed as JSONWebKeySet;
}

function identityOf(payload: JWTPayload, config: VerifierConfig): VerifiedIdentity {
  if (typeof payload.sub !== 'string' || !payload.sub) throw new IdentityRefusedError('the token has no subject (sub claim)');
  const name = payload[config.nameClaim];
  if (typeof name !== 'string' || !name.trim())
    throw new IdentityRefusedError(`the token has no ${config.nameClaim} claim to name its holder (ROLLGATE_OIDC_NAME_CLAIM)`);
  const raw = payload[config.groupsClaim];
  const groups = Array.isArray(raw)
    ? raw.filter((g): g is string => typeof g === 'string')
    : typeof raw === 'string'
      ? raw.split(/\s+/).filter(Boolean)
      : [];
  return { name: name.trim(), subject: payload.sub, groups };
}

/** jose's errors as reasons (jose never puts the token in its messages). */
function refusalOf(err: unknown, config: VerifierConfig, errors: Jose['errors']): IdentityRefusedError {
  if ((err instanceof errors.JWTClaimValidationFailed || err instanceof errors.JWTExpired) && err.claim === 'iat')
    return new IdentityRefusedError(
      `the token was issued too long ago or has no iat claim (at most ${Math.round(config.maxTokenAgeMs / 60000)} min; ROLLGATE_OIDC_MAX_TOKEN_AGE)`,
    );
  if (err instanceof errors.JWTExpired)
    return new IdentityRefusedError(
      `the token has expired (exp ${err.payload.exp ? new Date(err.payload.exp * 1000).toISOString() : '?'})`,
    );
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return new IdentityRefusedError(`the token is for another audience (expected ${config.audience})`);
    if (err.claim === 'iss') return new IdentityRefusedError(`the token is from another issuer (expected ${config.issuer})`);
    return new IdentityRefusedError(`the token's ${err.claim} claim is refused: ${err.message}`);
  }
  if (err instanceof errors.JWSSignatureVerificationFailed)
    return new IdentityRefusedError("the token's signature does not verify with the issuer's keys");
  if (err instanceof errors.JWKSNoMatchingKey)
    return new IdentityRefusedError("the token is signed with a key the issuer's JWKS does not have");
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return new IdentityRefusedError('the token is not a valid JWT');
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported)
    return new IdentityRefusedError(`the token's algorithm is not accepted: ${(err as Error).message}`);
  // JWKS unreachable, timeouts: not a refusal of the token, let the caller retry.
  throw err;
}
