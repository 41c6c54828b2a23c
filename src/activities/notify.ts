/**
 * Alerts: a Slack-compatible JSON POST to the webhook, retried with backoff by Temporal.
 *
 * The URL is a worker-side secret: the spec names a variable (`notify.webhook_env`), this activity
 * reads it from the worker's environment, so the URL never enters the spec, the workflow history
 * or a status. It must pass the worker's URL policy (ROLLGATE_ALLOWED_URLS); redirects are not
 * followed. Errors name the variable, never the URL. `webhook` (a URL in the input) is still
 * accepted for rollouts started before webhook_env, whose spec carries it.
 */
import { ApplicationFailure } from '@temporalio/activity';
import { OutboundRefused, outboundRequest } from '../security/outbound';
import { redactDeep, secrets } from '../security/redact';
import type { UrlPolicy } from '../security/url-policy';
import { WEBHOOK_ENV_PATTERN } from '../spec/schema';
import { urlPolicyOf } from './deps';

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

export interface AlertInput {
  /** The worker variable holding the webhook URL (the spec's notify.webhook_env). */
  webhookEnv?: string;
  /** Legacy: a URL from the spec of a rollout started before webhook_env. */
  webhook?: string;
  payload: AlertPayload;
}

export function notifyActivities(deps: {
  webhookTimeoutMs?: number;
  urlPolicy?: UrlPolicy;
  secretEnv?: Record<string, string | undefined>;
}) {
  const env = () => deps.secretEnv ?? process.env;

  /** The URL and how to name it in messages (the variable, never the URL). */
  function webhookOf(input: AlertInput): { url: string; name: string } {
    if (input.webhookEnv !== undefined) {
      const name = input.webhookEnv;
      if (!WEBHOOK_ENV_PATTERN.test(name))
        throw ApplicationFailure.nonRetryable(`notify.webhook_env ${name} is not a ROLLGATE_WEBHOOK_<NAME> variable`, 'WebhookEnv');
      const url = env()[name];
      if (!url)
        throw ApplicationFailure.nonRetryable(
          `notify.webhook_env: ${name} is not set on this worker (set it to the webhook URL)`,
          'WebhookEnvUnset',
        );
      secrets.addSecret(url);
      return { url, name: `the webhook in ${name}` };
    }
    if (input.webhook) {
      secrets.addSecret(input.webhook);
      return { url: input.webhook, name: 'the webhook in notify.webhook' };
    }
    throw ApplicationFailure.nonRetryable('no webhook: notify.webhook_env is not set', 'WebhookEnv');
  }

  return {
    async sendAlert(input: AlertInput): Promise<{ status: number; deliveredAtMs: number }> {
      const { url, name } = webhookOf(input);
      let res;
      try {
        res = await outboundRequest(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'rollgate' },
          // What the operator receives passes the redactor too (texts quote failures and operators).
          body: JSON.stringify(redactDeep(input.payload)),
          timeoutMs: deps.webhookTimeoutMs ?? 10_000,
          maxBodyBytes: 1024,
          policy: urlPolicyOf(deps),
        });
      } catch (err) {
        // Messages may quote the URL (it is registered with the redactor); refusals are final.
        const why = (err as Error).message;
        if (err instanceof OutboundRefused) throw ApplicationFailure.nonRetryable(`${name} refused: ${why}`, 'WebhookRefused');
        throw new Error(`${name} unreachable: ${why}`);
      }
      if (res.status >= 500 || res.status === 429) throw new Error(`${name} answered ${res.status}`);
      if (res.status >= 400) throw ApplicationFailure.nonRetryable(`${name} refused the alert: HTTP ${res.status}`, 'WebhookRefused');
      return { status: res.status, deliveredAtMs: Date.now() };
    },
  };
}
