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

export const redactingActivityInterceptor: ActivityInterceptorsFactory = () => ({
  inbound: {
    async execute(input, next) {
      try {
        return redactDeep(await next(input));
      } catch (err) {
        throw redactError(err);
      }
    },
  },
});
