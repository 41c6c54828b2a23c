/**
 * `rollgate promote`, `rollback`, `veto` and `releases`: environments and the release registry
 * (src/releases.ts). Added to the program by main.ts, which passes its shared helpers.
 */
import type { Command } from 'commander';
import type { Client } from '@temporalio/client';
import { formatDuration } from '../spec/duration';
import { DEFAULT_PIPELINE_FILE, loadPipelineFile, type Pipeline } from '../spec/pipeline';
import { SpecError } from '../spec/validate';
import { promoteRelease, recordClosedRollout, releaseRecords, rollbackToRelease, vetoRelease } from '../releases';
import { RUNNER_TASK_QUEUE, TASK_QUEUE } from '../contract';
import type { RegistryState } from '../contract';

export interface CliHelpers {
  withClient<R>(fn: (c: Client) => Promise<R>): Promise<R>;
  print(json: boolean | undefined, value: unknown, text: string): void;
  tokenOf(o: { token?: string }): string | undefined;
  defaultUser(): string;
  tokenHelp: string;
}

interface StartFlags {
  pipeline: string;
  by: string;
  token?: string;
  taskQueue: string;
  runnerTaskQueue: string;
  json?: boolean;
}

function pipelineFor(service: string, file: string): Pipeline {
  const p = loadPipelineFile(file);
  if (p.service !== service) throw new SpecError([{ path: 'service', message: `is ${p.service}, the command names ${service}` }], file);
  return p;
}

export function addReleaseCommands(program: Command, h: CliHelpers): void {
  const startOptions = (c: Command) =>
    c
      .option('--pipeline <file>', 'pipeline file (environments in order)', DEFAULT_PIPELINE_FILE)
      .option('--by <name>', 'who starts it (recorded for the four-eyes rule)', h.defaultUser())
      .option('--token <jwt>', h.tokenHelp)
      .option('--task-queue <queue>', 'worker task queue', process.env.ROLLGATE_TASK_QUEUE || TASK_QUEUE)
      .option('--runner-task-queue <queue>', 'runner task queue', process.env.ROLLGATE_RUNNER_TASK_QUEUE || RUNNER_TASK_QUEUE)
      .option('--json', 'machine-readable output');
  const opts = (o: StartFlags) => {
    const token = h.tokenOf(o);
    return { startedBy: o.by, taskQueue: o.taskQueue, runnerTaskQueue: o.runnerTaskQueue, ...(token ? { token } : {}) };
  };

  startOptions(
    program
      .command('promote')
      .argument('<service>', 'service of the pipeline')
      .requiredOption('--release <release>', 'release to promote')
      .requiredOption('--to <env>', 'environment to start it in'),
  )
    .description(
      'Start RELEASE in ENV. The first environment builds it; a later one deploys exactly the artifact digest the environment before verified, and refuses (saying why) a release that did not succeed there, was rolled back there, has not soaked long enough or is vetoed.',
    )
    .action(async (service: string, o: StartFlags & { release: string; to: string }) => {
      const p = pipelineFor(service, o.pipeline);
      await h.withClient(async (client) => {
        const handle = await promoteRelease(client, p, o.release, o.to, opts(o));
        h.print(
          o.json,
          { id: handle.workflowId, runId: handle.firstExecutionRunId },
          `${handle.workflowId}: ${o.release} promoted to ${o.to} (started)`,
        );
      });
    });

  startOptions(
    program
      .command('rollback')
      .argument('<service>', 'service of the pipeline')
      .requiredOption('--to <release>', 'release to go back to')
      .option('--env <env>', 'environment (default: the pipeline’s last)'),
  )
    .description(
      'Put every target of the environment back on the version/revision RELEASE promoted there (recorded at promotion): no build and no canary analysis, but the spec’s locks, freeze windows and the environment’s approval apply.',
    )
    .action(async (service: string, o: StartFlags & { to: string; env?: string }) => {
      const p = pipelineFor(service, o.pipeline);
      const env = o.env ?? p.environments[p.environments.length - 1].name;
      await h.withClient(async (client) => {
        const handle = await rollbackToRelease(client, p, o.to, env, opts(o));
        h.print(
          o.json,
          { id: handle.workflowId, runId: handle.firstExecutionRunId },
          `${handle.workflowId}: ${env} going back to ${o.to} (started)`,
        );
      });
    });

  program
    .command('veto')
    .argument('<service>', 'service')
    .argument('<release>', 'release to mark bad')
    .requiredOption('--reason <text>', 'why (recorded on the release)')
    .option('--by <name>', 'who vetoes', h.defaultUser())
    .option('--token <jwt>', h.tokenHelp)
    .option('--json', 'machine-readable output')
    .description('Mark RELEASE bad: no later rollout of SERVICE (start, promote, train member) deploys its artifact digest.')
    .action(async (service: string, release: string, o: { reason: string; by: string; token?: string; json?: boolean }) => {
      await h.withClient(async (client) => {
        const token = h.tokenOf(o);
        const veto = await vetoRelease(client, service, release, { by: o.by, reason: o.reason, ...(token ? { token } : {}) });
        h.print(o.json, veto, `${service} ${release}: vetoed by ${veto.by}${veto.verified ? '' : ' (unverified)'}: ${veto.reason}`);
      });
    });

  program
    .command('releases')
    .argument('<service>', 'service')
    .option('--record <workflowId/runId>', 'tell the registry about a closed pipeline rollout it missed (it reads the run itself)')
    .option('--json', 'machine-readable output')
    .description('Release records of SERVICE per environment: digest, outcome, promoted versions, verdicts, approvals, soak time, veto.')
    .action(async (service: string, o: { record?: string; json?: boolean }) => {
      await h.withClient(async (client) => {
        if (o.record) {
          const [workflowId, runId] = o.record.split('/');
          if (!workflowId || !runId) throw new SpecError([{ path: '--record', message: 'must be WORKFLOW_ID/RUN_ID' }], 'arguments');
          await recordClosedRollout(client, service, workflowId, runId);
        }
        const state = await releaseRecords(client, service);
        h.print(o.json, state, formatReleases(state, Date.now()));
      });
    });
}

/** The registry as text: one block per release, one line per environment, then its evidence. */
export function formatReleases(state: RegistryState, nowMs: number): string {
  if (state.releases.length === 0) return `${state.service}: no releases recorded`;
  const lines: string[] = [];
  for (const r of state.releases) {
    // The first run's artifact; each environment's line below says what it deployed (a re-run may have rebuilt it).
    lines.push(`${r.release}  artifact ${r.artifact.digest}${r.artifact.image ? ` (${r.artifact.image})` : ''}`);
    if (r.veto)
      lines.push(
        `  VETOED by ${r.veto.by}${r.veto.verified ? '' : ' (unverified)'} at ${new Date(r.veto.atMs).toISOString()}: ${r.veto.reason}`,
      );
    for (const e of r.environments) {
      const soak =
        e.promotedAtMs !== undefined && e.rolledBackAtMs === undefined ? `, soaked ${formatDuration(nowMs - e.promotedAtMs)}` : '';
      lines.push(
        `  ${e.environment}: ${e.outcome}${e.rolledBackAtMs ? ' (rolled back)' : ''}${soak}; closed ${new Date(e.closedAtMs).toISOString()}; started by ${e.startedBy}${e.starterVerified ? '' : ' (unverified)'}; run ${e.rolloutId}/${e.runId}`,
      );
      if (e.artifact) lines.push(`    artifact ${e.artifact.digest}${e.artifact.image ? ` (${e.artifact.image})` : ''}`);
      if (e.targets.length)
        lines.push(`    versions: ${e.targets.map((t) => `${t.name} ${t.version ?? '-'} (was ${t.previous ?? '-'})`).join(', ')}`);
      for (const a of e.approvals) lines.push(`    ${a.decision} ${a.wave} by ${a.by}${a.verified ? '' : ' (unverified)'}`);
      for (const v of e.verdicts) lines.push(`    ${v}`);
      if (e.restoredAtMs) lines.push(`    restored by rollback at ${new Date(e.restoredAtMs).toISOString()}`);
    }
  }
  if (state.refused.length) lines.push(`refused messages: ${state.refused.map((x) => `${x.message}: ${x.reason}`).join(' | ')}`);
  return lines.join('\n');
}
