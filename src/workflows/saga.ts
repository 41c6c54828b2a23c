/**
 * Compensation saga: each side-effecting step pushes how to undo it, *before* the step runs (a step
 * that fails or is cancelled part-way may already have changed something; every undo is idempotent). Compensations run in reverse
 * order inside a non-cancellable scope (an abort must not interrupt a revert); entries pushed with
 * the same `group` are independent (one per target) and run in parallel, so ten targets revert in
 * the time of one. A failed compensation is reported and kept for a retry, never dropped.
 */
import { CancellationScope } from '@temporalio/workflow';

interface Compensation {
  label: string;
  group: string;
  run: () => Promise<void>;
}

export interface CompensationOutcome {
  label: string;
  ok: boolean;
  error?: string;
}

export class Saga {
  private readonly steps: Compensation[] = [];
  private readonly labels = new Set<string>();

  /** Push once per label: a second push of the same undo (e.g. the same target) is ignored. */
  push(label: string, group: string, run: () => Promise<void>): void {
    if (this.labels.has(label)) return;
    this.labels.add(label);
    this.steps.push({ label, group, run });
  }

  async compensate(): Promise<CompensationOutcome[]> {
    const outcomes: CompensationOutcome[] = [];
    await CancellationScope.nonCancellable(async () => {
      const steps = [...this.steps].reverse();
      for (let i = 0; i < steps.length;) {
        let j = i;
        while (j < steps.length && steps[j].group === steps[i].group) j++;
        const batch = steps.slice(i, j);
        const results = await Promise.all(
          batch.map(async (s) => {
            try {
              await s.run();
              return { label: s.label, ok: true };
            } catch (err) {
              return { label: s.label, ok: false, error: failureMessage(err) };
            }
          }),
        );
        outcomes.push(...results);
        i = j;
      }
    });
    // Failed compensations stay on the saga: the operator fixes the target and `resume` retries them.
    const failed = new Set(outcomes.filter((o) => !o.ok).map((o) => o.label));
    const remaining = this.steps.filter((s) => failed.has(s.label));
    this.steps.length = 0;
    this.steps.push(...remaining);
    this.labels.clear();
    for (const s of remaining) this.labels.add(s.label);
    return outcomes;
  }
}

type FailureLike = { message?: string; cause?: unknown; lastHeartbeatDetails?: unknown };

/**
 * The innermost cause's message of an ActivityFailure / ApplicationFailure chain. A timeout with
 * no cause (the deadline fired while an attempt was in flight) names the last failure an attempt
 * heartbeated (`withHeartbeat`), so "gave up retrying" always says what kept failing.
 */
export function failureMessage(err: unknown): string {
  let e = err as FailureLike | undefined;
  let msg = e?.message ?? String(err);
  while (e && e.cause) {
    e = e.cause as FailureLike;
    if (e?.message) msg = e.message;
  }
  const lastError = (e?.lastHeartbeatDetails as { lastError?: unknown } | undefined)?.lastError;
  if (typeof lastError === 'string' && lastError) msg = `${msg}; last error: ${lastError}`;
  return msg;
}
