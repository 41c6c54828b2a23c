/**
 * What an incoming alert says, whatever sent it: which service (and optionally which release or
 * revision) it is about and whether it is firing. Pure parsing, no I/O: the receiver decides what
 * to do with a claim against the service's open rollout (src/alerts/resolve.ts).
 */

export type AlertSource = 'alertmanager' | 'cloudwatch';

export interface AlertClaim {
  source: AlertSource;
  /** The alert's or alarm's name (alertname label, AlarmName). */
  name: string;
  /** Only a firing alert (Alertmanager `firing`, CloudWatch `ALARM`) acts; the rest are acknowledged. */
  firing: boolean;
  /** The service it is about, when the payload names one (label, dimension, description token). */
  service?: string;
  release?: string;
  revision?: string;
  /** A Lambda function the alarm watches (FunctionName dimension), when no service is named. */
  lambda?: { function: string; region?: string; alias?: string };
  /** When the alert started firing / the alarm changed state (ms), if the payload says. */
  sinceMs?: number;
  /** A short human line for the rollout's history ("HighErrorRate: error rate 9 % on checkout"). */
  summary: string;
}

/** Bounded, single-line text from a payload field (reasons end up in the rollout's history and alerts). */
export function oneLine(text: unknown, max = 200): string {
  const s = String(text ?? '')
    .replace(/\s+/g, ' ')
    .trim();
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export class PayloadError extends Error {}
