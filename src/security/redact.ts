/**
 * The one redactor. Everything that leaves an activity (results and failures, through the
 * activity interceptor in src/security/activity-redaction.ts), every log line (src/observability/
 * logger.ts), every alert (src/activities/notify.ts) and every status the client reads
 * (src/client.ts) goes through `redact` / `redactDeep`.
 *
 * It removes two kinds of things:
 * - values it knows to be secret, registered by the code that read them: environment values read
 *   for drift checks and deploys (src/providers/aws-lambda.ts; see addEnvValue for which), the worker's and runner's own
 *   secret-looking variables and the runner's allow-listed ones (`registerSecretEnv`), resolved
 *   webhook URLs (notify). Values shorter than MIN_SECRET_LENGTH are not registered (they would
 *   blank out ordinary words);
 * - common credential shapes, known or not: URL userinfo, signed-URL and token query parameters,
 *   `password=`/`token:`-style pairs, Bearer/Basic credentials, AWS access key ids, Slack, GitHub
 *   and Google tokens, JWTs, PEM private keys, Slack/Discord webhook paths, and a Lambda
 *   `"Variables":{...}` block (the environment of a GetFunction answer).
 *
 * Pure (no Node APIs): the client, the CLI and the schema's tests share it.
 */

export const REDACTED = '[redacted]';
/** Shorter registered values are ignored: "info", "true" or "8080" would blank out ordinary text. */
export const MIN_SECRET_LENGTH = 6;
/** Known values kept per process (oldest dropped first), so a long-lived worker stays bounded. */
const MAX_KNOWN = 5000;

const SECRET_KEY = String.raw`[A-Za-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential|authorization|session[_-]?key|signature)[A-Za-z0-9_.-]*`;

/** [pattern, replacement]; applied in order, after the known values. */
const PATTERNS: [RegExp, string][] = [
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g, REDACTED],
  // Lambda's GetFunction(Configuration) environment, wherever an SDK message quotes it.
  [/(\\?"Variables\\?"\s*:\s*)\{[^{}]*\}/g, `$1${REDACTED}`],
  // https://user:password@host
  [/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@:"'<>]+:[^\s/@"'<>]+@/gi, `$1${REDACTED}@`],
  // Signed URLs (S3 presigned Code.Location, GCS) and token-like query parameters.
  [
    /([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|access_token|id_token|api_key|apikey|key|password|secret|code|auth)=)[^&\s"'#<>]+/gi,
    `$1${REDACTED}`,
  ],
  [/\b(https:\/\/hooks\.slack\.com\/)[^\s"'<>]+/gi, `$1${REDACTED}`],
  [/\b(https:\/\/(?:discord(?:app)?\.com)\/api\/webhooks\/)[^\s"'<>]+/gi, `$1${REDACTED}`],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, `$1 ${REDACTED}`],
  // KEY=value, "key": "value", key: value for secret-looking keys.
  [new RegExp(String.raw`(\b${SECRET_KEY}\\?["']?\s*[:=]\s*\\?["']?)([^\s"',;&}\]<>\\]{3,})`, 'gi'), `$1${REDACTED}`],
  [/\b(?:AKIA|ASIA|AROA|AIDA|ANPA|AIPA)[A-Z0-9]{16}\b/g, REDACTED],
  [/\bxox[abposr]-[A-Za-z0-9-]{10,}/g, REDACTED],
  [/\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})/g, REDACTED],
  [/\bAIza[0-9A-Za-z_-]{35}\b/g, REDACTED],
  [/\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}/g, REDACTED],
  [/\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, REDACTED],
];

/** Names of variables whose values are secrets (the worker's and runner's own environment). */
const SECRET_ENV_NAME =
  /(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|APIKEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL|CODEC_KEY|HASH_KEY|WEBHOOK|DSN|AUTH)/i;

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export class Redactor {
  private readonly known = new Set<string>();
  private matcher: RegExp | null = null;

  constructor(private readonly maxKnown = MAX_KNOWN) {}

  /** Register a value that must never appear in output (and the forms it takes inside JSON and URLs). */
  addSecret(value: string | undefined | null): void {
    if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH) return;
    const forms = new Set([value, value.trim(), JSON.stringify(value).slice(1, -1), encodeURIComponent(value)]);
    for (const f of forms) {
      if (f.length < MIN_SECRET_LENGTH) continue;
      if (this.known.has(f)) {
        // Refresh its age: a value still in use is not the oldest.
        this.known.delete(f);
        this.known.add(f);
        continue;
      }
      this.known.add(f);
      this.matcher = null;
      if (this.known.size > this.maxKnown) this.known.delete(this.known.values().next().value!);
    }
  }

  /** How many values are registered (tests). */
  get size(): number {
    return this.known.size;
  }

  /** The text with every known value and every credential pattern replaced by [redacted]. */
  redact(text: string): string {
    if (!text) return text;
    let out = text;
    if (this.known.size) {
      if (!this.matcher)
        this.matcher = new RegExp(
          [...this.known]
            .sort((a, b) => b.length - a.length)
            .map(escapeRegExp)
            .join('|'),
          'g',
        );
      out = out.replace(this.matcher, REDACTED);
    }
    for (const [re, to] of PATTERNS) out = out.replace(re, to);
    return out;
  }

  /** A copy with every string (values, not keys) redacted; other values as they are. */
  redactDeep<T>(value: T, depth = 0): T {
    if (typeof value === 'string') return this.redact(value) as T;
    if (value === null || typeof value !== 'object' || depth > 20) return value;
    if (Array.isArray(value)) return value.map((v) => this.redactDeep(v, depth + 1)) as T;
    if (!isPlainObject(value)) return value;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = this.redactDeep(v, depth + 1);
    return out as T;
  }

  /**
   * A target's environment variable (read for a deploy or a drift check): registered when its
   * name looks secret (PASSWORD, TOKEN, ...) or its value looks like a credential (16+ characters,
   * letters and digits, no blanks). Not every value: "us-east-1" or "production" in an
   * environment would blank out target names and ordinary words everywhere.
   */
  addEnvValue(key: string, value: string | undefined): void {
    if (typeof value !== 'string') return;
    if (SECRET_ENV_NAME.test(key) || looksLikeCredential(value)) this.addSecret(value);
  }

  /**
   * Register the values of an environment's secret-looking variables (names with PASSWORD, SECRET,
   * TOKEN, API_KEY, ..., WEBHOOK; AWS_SECRET_ACCESS_KEY, TEMPORAL_API_KEY, ROLLGATE_CODEC_KEY, ...)
   * and of the variables named in `also` (the runner's allow-list: those go to commands).
   */
  registerSecretEnv(env: Record<string, string | undefined>, also: string[] = []): void {
    for (const [k, v] of Object.entries(env)) if (SECRET_ENV_NAME.test(k) || also.includes(k)) this.addSecret(v);
    // Previous codec keys: "id:key,id:key".
    for (const part of (env.ROLLGATE_CODEC_PREVIOUS_KEYS ?? '').split(',')) this.addSecret(part.split(':').slice(1).join(':'));
  }
}

/** 16+ characters of letters and digits (and URL/base64 punctuation), no blanks: a key, a token, a password. */
export function looksLikeCredential(v: string): boolean {
  return v.length >= 16 && !/\s/.test(v) && /[A-Za-z]/.test(v) && /\d/.test(v);
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** The process's redactor: one registry of known values for the activities, the logger and the client. */
export const secrets = new Redactor();

export const redact = (text: string): string => secrets.redact(text);
export const redactDeep = <T>(value: T): T => secrets.redactDeep(value);

/**
 * A response body as it may enter history, an alert or a log: one line, printable characters
 * only, redacted, at most `max` characters.
 */
export function bodyExcerpt(text: string, max = 120): string {
  const line = text
    .replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  const clean = redact(line);
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
