/**
 * A small JSON-lines logger for the worker (no logging framework). Install it as the Temporal
 * Runtime logger, so it receives the SDK's own lines, activity `log` lines and workflow `log` lines
 * (forwarded from the sandbox by the SDK's logger sink; never repeated during replay).
 *
 * Every line carries `rolloutId`, `service`, `release` and `stage` (null when unknown):
 * - workflow lines from RolloutRun.record() pass all four as attributes;
 * - other lines of a rollout (SDK workflow/activity lines with a `workflowId`) get them from the last
 *   line that named them for that rollout (a bounded cache), or at least the rollout id and the
 *   service from the `rollout-<service>` workflow id.
 *
 * Every line passes the redactor (src/security/redact.ts) as serialized JSON.
 *
 * Environment: ROLLGATE_LOG_LEVEL (TRACE, DEBUG, INFO, WARN, ERROR; default INFO).
 */
import { LogTimestamp, type LogLevel, type LogMetadata, type Logger } from '@temporalio/worker';
import { redact } from '../security/redact';

const SEVERITY: Record<LogLevel, number> = { TRACE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4 };
const ROLLOUT_FIELDS = ['rolloutId', 'service', 'release', 'stage'] as const;
const ROLLOUT_ID_PREFIX = 'rollout-';

export interface RolloutLogContext {
  rolloutId: string | null;
  service: string | null;
  release: string | null;
  stage: string | null;
}

export interface JsonLoggerOptions {
  level?: LogLevel;
  /** Where lines go (one JSON object, no trailing newline); default: stderr. */
  write?: (line: string) => void;
  /** Fields on every line (e.g. `{ component: 'worker' }`). */
  base?: Record<string, unknown>;
  /** How many rollouts' context to remember. */
  contextCacheSize?: number;
}

export function parseLogLevel(s: string | undefined, fallback: LogLevel = 'INFO'): LogLevel {
  const up = (s ?? '').trim().toUpperCase();
  if (!up) return fallback;
  if (up in SEVERITY) return up as LogLevel;
  throw new Error(`ROLLGATE_LOG_LEVEL must be one of ${Object.keys(SEVERITY).join(', ')} (got "${s}")`);
}

function plain(v: unknown, depth = 0): unknown {
  if (v === null || v === undefined) return v ?? null;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'function' || typeof v === 'symbol') return undefined;
  if (v instanceof Error) return { name: v.name, message: v.message, stack: v.stack };
  if (v instanceof Date) return v.toISOString();
  if (typeof v !== 'object') return v;
  if (depth > 6) return '[depth]';
  if (Array.isArray(v)) return v.map((x) => plain(x, depth + 1));
  return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, plain(x, depth + 1)]));
}

export class JsonLogger implements Logger {
  readonly level: LogLevel;
  private readonly severity: number;
  private readonly write: (line: string) => void;
  private readonly base: Record<string, unknown>;
  private readonly contexts = new Map<string, RolloutLogContext>();
  private readonly cacheSize: number;

  constructor(o: JsonLoggerOptions = {}) {
    this.level = o.level ?? 'INFO';
    this.severity = SEVERITY[this.level];
    this.write = o.write ?? ((line) => process.stderr.write(`${line}\n`));
    this.base = o.base ?? {};
    this.cacheSize = o.contextCacheSize ?? 1000;
  }

  /** The rollout fields this logger would put on a line with these attributes (and remembers them). */
  rolloutContext(meta: LogMetadata = {}): RolloutLogContext {
    const workflowId = typeof meta.workflowId === 'string' ? meta.workflowId : undefined;
    const rolloutId =
      (typeof meta.rolloutId === 'string' && meta.rolloutId) || (workflowId?.startsWith(ROLLOUT_ID_PREFIX) ? workflowId : undefined);
    const known = rolloutId ? this.contexts.get(rolloutId) : undefined;
    const str = (k: string) => (typeof meta[k] === 'string' && meta[k] ? (meta[k] as string) : undefined);
    const ctx: RolloutLogContext = {
      rolloutId: rolloutId ?? null,
      service:
        str('service') ?? known?.service ?? (rolloutId?.startsWith(ROLLOUT_ID_PREFIX) ? rolloutId.slice(ROLLOUT_ID_PREFIX.length) : null),
      release: str('release') ?? known?.release ?? null,
      stage: str('stage') ?? known?.stage ?? null,
    };
    if (rolloutId) {
      this.contexts.delete(rolloutId);
      this.contexts.set(rolloutId, ctx);
      if (this.contexts.size > this.cacheSize) this.contexts.delete(this.contexts.keys().next().value!);
    }
    return ctx;
  }

  log(level: LogLevel, message: string, meta: LogMetadata = {}): void {
    if (SEVERITY[level] < this.severity) return;
    const nanos = meta[LogTimestamp as unknown as string] as bigint | undefined;
    const ts = new Date(typeof nanos === 'bigint' ? Number(nanos / 1_000_000n) : Date.now()).toISOString();
    const ctx = this.rolloutContext(meta);
    const rest = Object.fromEntries(
      Object.entries(meta).filter(([k]) => !(ROLLOUT_FIELDS as readonly string[]).includes(k) && k !== 'message' && k !== 'level'),
    );
    let line: string;
    try {
      line = JSON.stringify({ ts, level: level.toLowerCase(), msg: message, ...ctx, ...this.base, ...(plain(rest) as object) });
    } catch {
      line = JSON.stringify({ ts, level: level.toLowerCase(), msg: message, ...ctx, ...this.base, meta: '[unserializable]' });
    }
    // The whole line, after serialization: secrets in messages, errors, stacks and any field.
    this.write(redact(line));
  }

  trace(message: string, meta?: LogMetadata): void {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata): void {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata): void {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata): void {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata): void {
    this.log('ERROR', message, meta);
  }
}
