/**
 * One long-lived registry per service (`rollgate-releases-SERVICE`): each release's record per
 * environment (digest, outcome, promoted versions, verdicts, approvals, soak times) and its veto.
 * Temporal forgets closed rollouts after the namespace's retention; this workflow stays open (it
 * waits without timers, so waiting costs no history) and continues as new before its history grows.
 *
 * Trust: anyone who can reach the task queue can signal. A `rolloutClosed` message only names a
 * run; the registry reads that run's real result from Temporal (activity readClosedRollout) and
 * records what it finds, or records a refusal. A veto carries a verified identity when the worker
 * verifies identities (the token goes to the checkIdentity local activity, like an approval's).
 */
import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  log,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  pipelineDeclaredSignal,
  registrySettledQuery,
  registryStateQuery,
  releaseGateQuery,
  rolloutClosedSignal,
  vetoedDigestQuery,
  vetoUpdate,
  type DeclaredPipeline,
  type RegistryRefusal,
  type RegistryState,
  type ReleaseRecord,
  type RolloutClosed,
  type Veto,
} from '../contract';
import { applyClosedRun, environmentRefusal, releaseGate, vetoOf } from './release-records';
import { checkIdentity } from './identity';
import { failureMessage } from './saga';

export interface ReleaseRegistryInput {
  service: string;
  /** Carried over continue-as-new. */
  releases?: ReleaseRecord[];
  refused?: RegistryRefusal[];
  pending?: RolloutClosed[];
  pipeline?: DeclaredPipeline;
}

/**
 * Marks registries that count a closed run as evidence of an environment only when its targets are
 * that environment's in the declared pipeline (not because the run names it). Asked once, lazily,
 * just before the first run is read (not at the start: a registry stays open for months, and one
 * started before this change must stop believing a run's environment from its next read on). It
 * never follows a local activity in its coroutine (it runs after the main loop wakes on a signal,
 * or first thing after a continue-as-new), so core has applied the task's patch markers.
 */
export const REGISTRY_TARGETS_PATCH = 'release-registry-environment-targets';

/** Releases kept: the oldest beyond this are dropped (a registry is not an archive of every build). */
const MAX_RELEASES = 200;
const MAX_REFUSALS = 20;
/** Continue as new well before the server's 51,200-event limit. */
const CONTINUE_AFTER_EVENTS = 2_000;

const reader = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // A run announced just before it returns is still open for a moment: tried again, then refused.
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 6 },
});

/** Marks registry executions whose veto identity check is a regular activity (docs/DEVELOPMENT.md, "Local activities and replay"). */
export const REGISTRY_NO_LOCAL_ACTIVITIES_PATCH = 'release-registry-no-local-activities';

class ReleaseRegistry {
  /** The local-activity identity check of executions recorded before REGISTRY_NO_LOCAL_ACTIVITIES_PATCH. */
  localChecks = true;
  releases: ReleaseRecord[];
  refused: RegistryRefusal[];
  pending: RolloutClosed[];
  pipeline: DeclaredPipeline | undefined;
  private checksTargets: boolean | undefined;

  constructor(readonly input: ReleaseRegistryInput) {
    this.releases = input.releases ?? [];
    this.refused = input.refused ?? [];
    this.pending = input.pending ?? [];
    this.pipeline = input.pipeline;
  }

  installHandlers(): void {
    setHandler(rolloutClosedSignal, (m) => {
      if (!isRolloutClosed(m)) return this.refuse('rolloutClosed', 'malformed message (needs workflowId and runId strings)');
      if (!this.pending.some((p) => p.workflowId === m.workflowId && p.runId === m.runId))
        this.pending.push({ workflowId: m.workflowId, runId: m.runId });
    });
    setHandler(pipelineDeclaredSignal, (p) => {
      if (!isDeclaredPipeline(p))
        return this.refuse('pipelineDeclared', 'malformed message (needs environments: [{name, targets: string[]}])');
      this.pipeline = { environments: p.environments.map((e) => ({ name: e.name, targets: [...e.targets] })) };
    });
    setHandler(
      vetoUpdate,
      async ({ release, by, token, reason }) => {
        const check = await checkIdentity({ action: 'veto', token, claimedBy: by, requireToken: true }, this.localChecks);
        return this.veto(release, { by: check.identity.name, verified: check.identity.verified, subject: check.identity.subject, reason });
      },
      {
        validator: ({ release, reason }) => {
          if (!this.releases.some((r) => r.release === release))
            throw ApplicationFailure.nonRetryable(`no record of release ${release} of ${this.input.service}`, 'Refused');
          if (!reason?.trim()) throw ApplicationFailure.nonRetryable('veto needs a reason', 'Refused');
        },
      },
    );
    setHandler(registryStateQuery, (): RegistryState => ({
      service: this.input.service,
      releases: this.releases,
      refused: this.refused,
      ...(this.pipeline ? { pipeline: this.pipeline } : {}),
    }));
    setHandler(vetoedDigestQuery, (digests) => vetoOf(this.releases, Array.isArray(digests) ? digests : []));
    setHandler(releaseGateQuery, (a) =>
      releaseGate(this.releases, this.pipeline, {
        release: String(a?.release ?? ''),
        digests: Array.isArray(a?.digests) ? a.digests.map(String) : [],
        ...(typeof a?.environment === 'string' ? { environment: a.environment } : {}),
        ...(a?.pinned ? { pinned: true } : {}),
        ...(a?.byRelease ? { byRelease: true } : {}),
      }),
    );
    setHandler(registrySettledQuery, () => this.pending.length === 0);
  }

  veto(release: string, v: Omit<Veto, 'atMs'>): Veto {
    const r = this.releases.find((x) => x.release === release)!;
    // The first veto stands: a second one does not rewrite who vetoed and why.
    r.veto ??= { ...v, atMs: Date.now() };
    return r.veto;
  }

  /** Reads the run the head message names and records it; a run that cannot be read is a refusal. */
  async recordNext(): Promise<void> {
    const m = this.pending[0];
    this.checksTargets ??= patched(REGISTRY_TARGETS_PATCH);
    try {
      const closed = await reader.readClosedRollout({ service: this.input.service, ...m });
      const wrongEnvironment = this.checksTargets ? environmentRefusal(this.pipeline, closed) : undefined;
      if (wrongEnvironment) throw new Error(wrongEnvironment);
      this.releases = applyClosedRun(this.releases, closed).slice(-MAX_RELEASES);
    } catch (err) {
      this.refuse('rolloutClosed', `${m.workflowId} run ${m.runId}: ${failureMessage(err)}`);
    }
    this.pending.shift();
  }

  refuse(message: string, reason: string): void {
    this.refused.push({ atMs: Date.now(), message, reason: reason.slice(0, 500) });
    if (this.refused.length > MAX_REFUSALS) this.refused.shift();
    log.warn(`release registry of ${this.input.service} refused a ${message}: ${reason}`);
  }

  carried(): ReleaseRegistryInput {
    return {
      service: this.input.service,
      releases: this.releases,
      refused: this.refused,
      pending: this.pending,
      ...(this.pipeline ? { pipeline: this.pipeline } : {}),
    };
  }
}

export async function releaseRegistryWorkflow(input: ReleaseRegistryInput): Promise<void> {
  const registry = new ReleaseRegistry(input);
  // Decided at the start, before any handler runs.
  registry.localChecks = !patched(REGISTRY_NO_LOCAL_ACTIVITIES_PATCH);
  registry.installHandlers();
  // Vetoes grow the history too (an update and its local activity): checked whenever it wakes.
  const tooLong = () => workflowInfo().historyLength > CONTINUE_AFTER_EVENTS || workflowInfo().continueAsNewSuggested;
  for (;;) {
    await condition(() => registry.pending.length > 0 || tooLong());
    while (registry.pending.length > 0) await registry.recordNext();
    if (tooLong()) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof releaseRegistryWorkflow>(registry.carried());
    }
  }
}

/** Signals are not type-checked on the wire: anything may arrive. */
function isRolloutClosed(m: unknown): m is RolloutClosed {
  if (typeof m !== 'object' || m === null) return false;
  const { workflowId, runId } = m as Record<string, unknown>;
  return typeof workflowId === 'string' && typeof runId === 'string' && workflowId.length <= 300 && runId.length <= 64;
}

function isDeclaredPipeline(p: unknown): p is DeclaredPipeline {
  if (typeof p !== 'object' || p === null) return false;
  const envs = (p as Record<string, unknown>).environments;
  return (
    Array.isArray(envs) &&
    envs.length > 0 &&
    envs.length <= 50 &&
    envs.every((e: unknown) => {
      if (typeof e !== 'object' || e === null) return false;
      const { name, targets } = e as Record<string, unknown>;
      return (
        typeof name === 'string' &&
        name.length <= 63 &&
        Array.isArray(targets) &&
        targets.length <= 200 &&
        targets.every((t) => typeof t === 'string' && t.length <= 300)
      );
    })
  );
}
