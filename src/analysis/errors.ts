/**
 * Errors from metric sources. A source that is down, overloaded or slow is retryable (the activity
 * retries it); a query or check the source rejects is not: it is thrown as
 * NonRetryableProviderError (code "MetricQuery"), the same class target providers use, so the
 * activity layer maps both to a non-retryable ApplicationFailure.
 */
export { NonRetryableProviderError } from '../providers/types';

export class MetricSourceUnavailableError extends Error {
  readonly retryable = true;
  constructor(
    message: string,
    readonly source: string,
  ) {
    super(message);
    this.name = 'MetricSourceUnavailableError';
  }
}
