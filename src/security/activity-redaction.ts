/**
 * "Before anything leaves an activity": an activity interceptor on the worker and on the runner
 * that passes every activity's result and failure through the redactor (src/security/redact.ts).
 * A failure keeps its class, type and retry flag; only its message, stack, details and causes are
 * rewritten, so retry policies and `nonRetryable` decisions are unchanged.
 */
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { redact, redactDeep } from './redact';

/** Rewrites an error's message, stack, details and cause chain in place (bounded depth). */
export function redactError(err: unknown, depth = 0): unknown {
  if (!(err instanceof Error) || depth > 5) return err;
  const e = err as Error & { details?: unknown[] | null; cause?: unknown };
  e.message = redact(e.message);
  if (e.stack) e.stack = redact(e.stack);
  if (Array.isArray(e.details)) (e as { details: unknown[] }).details = redactDeep(e.details);
  if (e.cause) redactError(e.cause, depth + 1);
  return e;
}

/**
 * Results passed on verbatim as data, not text: a rollout's status read back for a scheduled
 * analysis carries the spec (from the rollout's own input, already in history), whose URLs and
 * queries must reach the analysis unchanged. Their failures are still redacted.
 */
const VERBATIM_RESULTS = new Set(['readServiceRollout']);

export const redactingActivityInterceptor: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      try {
        const result = await next(input);
        return VERBATIM_RESULTS.has(ctx.info.activityType) ? result : redactDeep(result);
      } catch (err) {
        throw redactError(err);
      }
    },
  },
});
