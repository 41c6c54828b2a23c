/** Alerts: a Slack-compatible JSON POST to the spec's webhook; retried with backoff by Temporal. */
import { ApplicationFailure } from '@temporalio/activity';

export interface AlertPayload {
  /** Slack's field: one readable message. */
  text: string;
  rollgate: {
    rolloutId: string;
    service: string;
    release: string;
    event: string;
    state: string;
    reason?: string;
    revertedTargets?: string[];
    next?: string;
    escalation?: string;
  };
}

export function notifyActivities(deps: { webhookTimeoutMs?: number }) {
  return {
    async sendAlert(input: { webhook: string; payload: AlertPayload }): Promise<{ status: number; deliveredAtMs: number }> {
      let res: Response;
      try {
        res = await fetch(input.webhook, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'rollgate' },
          body: JSON.stringify(input.payload),
          signal: AbortSignal.timeout(deps.webhookTimeoutMs ?? 10_000),
        });
      } catch (err) {
        throw new Error(`webhook unreachable: ${(err as Error).message}`);
      }
      if (res.status >= 500 || res.status === 429) throw new Error(`webhook answered ${res.status}`);
      if (res.status >= 400) throw ApplicationFailure.nonRetryable(`webhook refused the alert: HTTP ${res.status}`, 'WebhookRefused');
      return { status: res.status, deliveredAtMs: Date.now() };
    },
  };
}
