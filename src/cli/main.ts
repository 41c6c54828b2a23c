/**
 * `rollgate` CLI. Exit codes: 0 ok, 2 invalid input (bad spec, bad arguments), 1 anything else
 * (refused, not found, cannot connect); `start --wait` and `watch` end with one code per outcome
 * (EXIT_CODES in format.ts, README "CLI"). Errors are one line that says what to do.
 */
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import { Command, CommanderError } from 'commander';
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { loadSpecFile, resolveSpecPaths, SpecError } from '../spec/validate';
import { connectClient } from '../temporal/connection';
import {
  approveRollout,
  awaitStarterCheck,
  createAnalysisSchedule,
  getStatus,
  listAnalysisSchedules,
  listRollouts,
  operateRollout,
  rejectRollout,
  retryRollout,
  rolloutHistory,
  ROLLOUT_LIST_STATES,
  scheduleAction,
  ScheduleUsageError,
  startRollout,
  waitForOutcome,
  type OutcomeReport,
  type RolloutFilter,
  type WaitOptions,
} from '../client';
import { analysisScheduleId, RUNNER_TASK_QUEUE, TASK_QUEUE } from '../contract';
import { durationMs } from '../spec/duration';
import { EXIT_CODES, exitCodeHelp, formatStatus } from './format';
import { formatPlan, planRollout } from '../spec/plan';
import { describeTrain, isTrainFile, loadTrainFile } from '../spec/train';
import { getTrainView, resolveTrainId, startTrain, waitForTrain } from '../train-client';
import { formatTrain } from './train-format';
import { addReleaseCommands, formatReleases } from './releases';
import { releaseRecords } from '../releases';
import { isPipelineDocument, loadPipelineFile } from '../spec/pipeline';
import { parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';

class UsageError extends Error {}

/** `--token` on every action, ROLLGATE_TOKEN by default (prefer it: a flag shows in the process list). */
const TOKEN_HELP = 'bearer token (OIDC/JWT) proving who you are, when the worker verifies identities (default: ROLLGATE_TOKEN)';
function tokenOf(o: { token?: string }): string | undefined {
  return o.token?.trim() || process.env.ROLLGATE_TOKEN?.trim() || undefined;
}

function defaultUser(): string {
  try {
    return process.env.ROLLGATE_USER || userInfo().username;
  } catch {
    return process.env.USER || 'unknown';
  }
}

async function withClient<R>(fn: (c: Client) => Promise<R>): Promise<R> {
  let client: Client;
  try {
    client = await connectClient();
  } catch (err) {
    throw new Error(
      `cannot connect to Temporal at ${process.env.TEMPORAL_ADDRESS || '127.0.0.1:7233'} (${(err as Error).message.split('\n')[0]}); set TEMPORAL_ADDRESS/TEMPORAL_NAMESPACE or start a server (npm run demo starts one)`,
    );
  }
  try {
    return await fn(client);
  } finally {
    await client.connection.close();
  }
}

function print(json: boolean | undefined, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

interface WaitFlags {
  timeout?: string;
  exitOnApproval?: boolean;
}

function waitOptions(o: WaitFlags): Pick<WaitOptions, 'timeoutMs' | 'exitOnApproval'> {
  let timeoutMs: number | undefined;
  if (o.timeout !== undefined) {
    timeoutMs = durationMs(o.timeout);
    if (timeoutMs === undefined || timeoutMs <= 0)
      throw new UsageError(`--timeout must be a duration such as 30m or "2 hours", got "${o.timeout}"`);
  }
  return { timeoutMs, exitOnApproval: o.exitOnApproval };
}

function exitCodeOf(r: OutcomeReport): number {
  return r.outcome === 'succeeded' ? EXIT_CODES.ok : EXIT_CODES[r.outcome];
}

function outcomeLine(id: string, r: OutcomeReport): string {
  return `${id}: ${r.outcome}${r.open ? ' (rollout still open)' : ''}: ${r.reason} [exit ${exitCodeOf(r)}]`;
}

const WAIT_HELP = `
start --wait and watch end when the rollout
  - closes (succeeded, rolled-back, aborted, failed, rollback-failed; or its workflow is terminated),
  - is paused after a rollback (open, waiting for resume or abort),
  - has a failed revert (rollback-failed, open, waiting for resume or abort),
  - waits for an approval, only with --exit-on-approval (otherwise they keep waiting for it),
  - or --timeout elapses (the rollout goes on).
An operator's pause keeps them waiting (someone paused on purpose; bound it with --timeout).
`;

export function buildProgram(): Command {
  const program = new Command('rollgate')
    .description('Durable, gated rollouts for AWS Lambda and Google Cloud Run on Temporal.')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', exitCodeHelp());

  program
    .command('validate')
    .argument('<file>', 'rollout spec, release train file (`train:`) or pipeline file (`environments:`); YAML or JSON')
    .option('--json', 'print the normalized spec as JSON')
    .description('Check a spec, a release train or a pipeline file without a server; every problem is listed with its field path.')
    .action((file: string, o: { json?: boolean }) => {
      if (isTrainFile(file)) {
        const train = loadTrainFile(file);
        return print(o.json, train, `${file}: ok, ${describeTrain(train)}`);
      }
      if (isPipelineFile(file)) {
        const p = loadPipelineFile(file);
        const envs = p.environments.map((e) => `${e.name}${e.soak ? ` (soak ${e.soak})` : ''}${e.approval ? ' (approval)' : ''}`);
        return print(o.json, p, `${file}: ok (pipeline of ${p.service}: ${envs.join(' → ')})`);
      }
      const spec = loadSpecFile(file);
      print(o.json, spec, `${file}: ok (${spec.service} ${spec.release}, ${spec.targets.length} target(s), ${spec.waves.length} wave(s))`);
    });

  program
    .command('start')
    .argument('<file>', 'rollout spec (YAML or JSON)')
    .option('--by <name>', 'who starts it (recorded for the four-eyes rule)', defaultUser())
    .option('--token <jwt>', TOKEN_HELP)
    .option('--wait', 'wait for the outcome (see below) and exit with its code')
    .option('--timeout <duration>', 'with --wait: stop waiting after this long (exit 7), e.g. 30m')
    .option('--exit-on-approval', 'with --wait: also end when the rollout waits for an approval (exit 8)')
    .option('--task-queue <queue>', 'worker task queue', process.env.ROLLGATE_TASK_QUEUE || TASK_QUEUE)
    .option(
      '--runner-task-queue <queue>',
      'runner task queue (build, test, migration)',
      process.env.ROLLGATE_RUNNER_TASK_QUEUE || RUNNER_TASK_QUEUE,
    )
    .option('--json', 'machine-readable output')
    .description('Validate the spec, then start its rollout; prints the rollout id.')
    .addHelpText('after', WAIT_HELP + exitCodeHelp())
    .action(
      async (
        file: string,
        o: { by: string; token?: string; wait?: boolean; taskQueue: string; runnerTaskQueue: string; json?: boolean } & WaitFlags,
      ) => {
        if (!o.wait && (o.timeout !== undefined || o.exitOnApproval)) throw new UsageError('--timeout and --exit-on-approval need --wait');
        const wait = waitOptions(o);
        if (isTrainFile(file)) return startTrainFile(file, o, wait.timeoutMs);
        const spec = resolveSpecPaths(loadSpecFile(file), dirname(file));
        await withClient(async (client) => {
          const token = tokenOf(o);
          const handle = await startRollout(client, spec, {
            startedBy: o.by,
            taskQueue: o.taskQueue,
            runnerTaskQueue: o.runnerTaskQueue,
            ...(token ? { token } : {}),
          });
          // With a token, say at once whether the worker accepted it (a refused start closes the rollout).
          if (token) await awaitStarterCheck(client, handle.workflowId, handle.firstExecutionRunId);
          if (!o.wait) return print(o.json, { id: handle.workflowId }, handle.workflowId);
          if (!o.json) process.stdout.write(`${handle.workflowId}: started, waiting for its outcome\n`);
          const r = await waitForOutcome(client, handle.workflowId, { ...wait, runId: handle.firstExecutionRunId });
          const code = exitCodeOf(r);
          print(
            o.json,
            {
              id: handle.workflowId,
              outcome: r.outcome,
              exitCode: code,
              open: r.open,
              reason: r.reason,
              state: r.status?.state,
              status: r.status,
            },
            outcomeLine(handle.workflowId, r),
          );
          process.exitCode = code;
        });
      },
    );

  program
    .command('status')
    .argument('<id>', 'rollout id (rollout-SERVICE), or a train (train-NAME or NAME)')
    .option('--json', 'machine-readable output')
    .description('Stage, state and per-target versions and weights; for a train, every member.')
    .action(async (id: string, o: { json?: boolean }) => {
      await withClient(async (client) => {
        const trainId = await resolveTrainId(client, id);
        if (trainId) {
          const v = await getTrainView(client, trainId);
          return print(o.json, v, formatTrain(v));
        }
        const s = await getStatus(client, id);
        print(o.json, s, formatStatus(s));
      });
    });

  program
    .command('approve')
    .argument('<id>', 'rollout id')
    .option('--by <name>', 'approver (must be in the spec and not the starter); with a token, the token names you')
    .option('--comment <text>', 'note recorded with the approval')
    .option('--wave <name>', 'the wave you mean: refused if the rollout waits for another one (a late approval)')
    .option('--token <jwt>', TOKEN_HELP)
    .description('Approve the wave the rollout is waiting for.')
    .action(async (id: string, o: { by?: string; comment?: string; wave?: string; token?: string }) => {
      const token = tokenOf(o);
      if (!token && !o.by) throw new UsageError('approve needs --by NAME (or a token: --token / ROLLGATE_TOKEN)');
      await withClient(async (client) => {
        console.log(`${id}: ${await approveRollout(client, id, { by: o.by, comment: o.comment, wave: o.wave, token })}`);
      });
    });

  program
    .command('reject')
    .argument('<id>', 'rollout id')
    .option('--by <name>', 'approver; with a token, the token names you')
    .requiredOption('--reason <text>', 'why (sent in the alert)')
    .option('--wave <name>', 'the wave you mean: refused if the rollout waits for another one')
    .option('--token <jwt>', TOKEN_HELP)
    .description('Reject the wave the rollout is waiting for; the rollout reverts and pauses.')
    .action(async (id: string, o: { by?: string; reason: string; wave?: string; token?: string }) => {
      const token = tokenOf(o);
      if (!token && !o.by) throw new UsageError('reject needs --by NAME (or a token: --token / ROLLGATE_TOKEN)');
      await withClient(async (client) => {
        console.log(`${id}: ${await rejectRollout(client, id, { by: o.by, reason: o.reason, wave: o.wave, token })}`);
      });
    });

  for (const [name, text] of [
    ['pause', 'Hold the rollout at its current weights; bake timers stop.'],
    ['resume', 'Continue a paused rollout; after a rollback, retry from the deploy stage (the same version is found again).'],
    ['abort', 'Revert every touched target and close the rollout.'],
  ] as const) {
    program
      .command(name)
      .argument('<id>', 'rollout id')
      .option('--by <name>', 'operator', defaultUser())
      .option('--reason <text>', 'recorded in the history')
      .option('--token <jwt>', TOKEN_HELP)
      .description(text)
      .action(async (id: string, o: { by: string; reason?: string; token?: string }) => {
        await withClient(async (client) => {
          console.log(`${id}: ${await operateRollout(client, id, name, { by: o.by, reason: o.reason, token: tokenOf(o) })}`);
        });
      });
  }

  program
    .command('plan')
    .argument('<file>', 'rollout spec (YAML or JSON)')
    .option('--json', 'machine-readable output')
    .description('Show the stages, waves, steps, bakes and approvals, and the minimum duration; starts nothing.')
    .action((file: string, o: { json?: boolean }) => {
      const plan = planRollout(loadSpecFile(file));
      print(o.json, plan, formatPlan(plan));
    });

  program
    .command('watch')
    .argument('<id>', 'rollout id')
    .option('--interval <ms>', 'refresh interval in ms', '1000')
    .option('--timeout <duration>', 'stop watching after this long (exit 7), e.g. 30m')
    .option('--exit-on-approval', 'also end when the rollout waits for an approval (exit 8)')
    .option('--json', 'one JSON status per line (NDJSON); the outcome line goes to stderr')
    .description(
      "Live view: stage, each target's weight as a bar, bake countdown, last verdict; ends with the outcome (see below) and its exit code.",
    )
    .addHelpText('after', WAIT_HELP + exitCodeHelp())
    .action(async (id: string, o: { interval: string; json?: boolean } & WaitFlags) => {
      const wait = waitOptions(o);
      await withClient(async (client) => {
        const trainId = await resolveTrainId(client, id);
        if (trainId)
          return watchTrain(client, trainId, { intervalMs: Number(o.interval) || 1000, timeoutMs: wait.timeoutMs, json: o.json });
        const tty = process.stdout.isTTY && !o.json;
        const r = await waitForOutcome(client, id, {
          ...wait,
          intervalMs: Number(o.interval) || 1000,
          onStatus: (s) => {
            if (o.json) process.stdout.write(`${JSON.stringify(s)}\n`);
            else process.stdout.write(`${tty ? '\x1b[2J\x1b[H' : ''}${formatStatus(s)}\n${tty ? '' : '\n'}`);
          },
        });
        // NDJSON stays one status per line; the outcome goes to stderr for the CI log.
        if (o.json) process.stderr.write(`${outcomeLine(id, r)}\n`);
        else process.stdout.write(`${outcomeLine(id, r)}\n`);
        process.exitCode = exitCodeOf(r);
      });
    });

  program
    .command('list')
    .option('--service <name>', 'only this service')
    .option('--state <state>', 'running | paused | succeeded | rolled-back | rollback-failed | aborted | failed')
    .option('--limit <n>', 'at most this many', '50')
    .option('--json', 'machine-readable output')
    .description('Rollouts from Temporal visibility, newest first.')
    .action(async (o: { service?: string; state?: string; limit: string; json?: boolean }) => {
      const states: readonly string[] = ROLLOUT_LIST_STATES;
      if (o.state && !states.includes(o.state)) throw new UsageError(`--state must be one of ${states.join(', ')}`);
      await withClient(async (client) => {
        const rows = await listRollouts(client, { service: o.service, state: o.state as RolloutFilter['state'], limit: Number(o.limit) });
        const text = rows.length
          ? rows
              .map((r) => `${r.id}  ${r.release}  ${r.state}  ${r.stage}${r.train ? `  train ${r.train}` : ''}  started ${r.startTime}`)
              .join('\n')
          : 'no rollouts match';
        print(o.json, rows, text);
      });
    });

  program
    .command('history')
    .argument('<id>', 'rollout id (with --releases: a service)')
    .option('--releases', 'the service’s release records and their evidence (same as `rollgate releases SERVICE`)')
    .option('--json', 'machine-readable output')
    .description('Decisions, approvals, verdicts and compensations in time order.')
    .action(async (id: string, o: { json?: boolean; releases?: boolean }) => {
      await withClient(async (client) => {
        if (o.releases) {
          const state = await releaseRecords(client, id);
          return print(o.json, state, formatReleases(state, Date.now()));
        }
        const history = await rolloutHistory(client, id);
        print(o.json, history, history.map((e) => `${new Date(e.atMs).toISOString()}  ${e.kind.padEnd(12)} ${e.text}`).join('\n'));
      });
    });

  program
    .command('retry')
    .argument('<id>', 'rollout id')
    .option('--by <name>', 'operator', defaultUser())
    .option('--token <jwt>', TOKEN_HELP)
    .description('Retry a pipeline paused after a rollback (from the deploy stage), or a failed revert.')
    .action(async (id: string, o: { by: string; token?: string }) => {
      await withClient(async (client) => {
        console.log(`${id}: ${await retryRollout(client, id, { by: o.by, token: tokenOf(o) })}`);
      });
    });

  const schedule = program
    .command('schedule')
    .description(
      'Scheduled canary analyses (Temporal Schedules): during a rollout they feed it verdicts; after a promotion, for a watch window, a fail reverts the release and pauses the pipeline.',
    );
  schedule
    .command('create')
    .argument('<service>', 'service name')
    .requiredOption('--every <duration>', 'interval, e.g. 5m')
    .option('--window <duration>', 'watch window after a promotion', '1h')
    .option('--task-queue <queue>', 'worker task queue', process.env.ROLLGATE_TASK_QUEUE || TASK_QUEUE)
    .description('Create the analysis schedule of a service.')
    .action(async (service: string, o: { every: string; window: string; taskQueue: string }) => {
      await withClient(async (client) => {
        const id = await createAnalysisSchedule(client, { service, every: o.every, window: o.window, taskQueue: o.taskQueue });
        console.log(`${id}: every ${o.every}, watch window ${o.window} after a promotion`);
      });
    });
  schedule
    .command('list')
    .option('--json', 'machine-readable output')
    .description('Analysis schedules.')
    .action(async (o: { json?: boolean }) => {
      await withClient(async (client) => {
        const rows = await listAnalysisSchedules(client);
        print(
          o.json,
          rows,
          rows.length
            ? rows
                .map(
                  (r) =>
                    `${r.id}  every ${r.every ?? '?'}  ${r.paused ? 'PAUSED' : 'active'}  runs ${r.recentActions}  next ${r.nextRun ?? '-'}`,
                )
                .join('\n')
            : 'no analysis schedules',
        );
      });
    });
  for (const action of ['pause', 'unpause', 'delete', 'trigger'] as const) {
    schedule
      .command(action)
      .argument('<service>', 'service name')
      .description(
        { pause: 'Pause the schedule.', unpause: 'Resume the schedule.', delete: 'Delete the schedule.', trigger: 'Run one analysis now.' }[
          action
        ],
      )
      .action(async (service: string) => {
        await withClient(async (client) => {
          await scheduleAction(client, service, action);
          console.log(`${analysisScheduleId(service)}: ${action} done`);
        });
      });
  }

  program
    .command('codec-server')
    .description(
      'Serve /encode and /decode for the Temporal UI/CLI (payload encryption). Env: ROLLGATE_CODEC_KEY, ROLLGATE_CODEC_KEY_ID, ROLLGATE_CODEC_TOKEN, ROLLGATE_CODEC_SERVER_ADDRESS, ROLLGATE_CODEC_CORS_ORIGINS.',
    )
    .action(async () => {
      const { runCodecServerFromEnv } = await import('../temporal/codec-server');
      const s = await runCodecServerFromEnv();
      // bin/rollgate.js exits when main resolves: wait until the server closes.
      await new Promise((r) => s.server.once('close', r));
    });

  program
    .command('worker')
    .description('Run a worker (connection from TEMPORAL_ADDRESS/TEMPORAL_NAMESPACE, AWS endpoints from AWS_ENDPOINT_URL_*).')
    .action(async () => {
      const { runWorkerFromEnv } = await import('../worker');
      await runWorkerFromEnv();
    });

  program
    .command('alert-receiver')
    .description(
      'Run only the alert receiver (Alertmanager webhooks, CloudWatch alarms via SNS) on ROLLGATE_ALERT_RECEIVER_PORT; `rollgate worker` runs the same receiver itself when that variable is set. Needs Temporal access, no cloud credentials.',
    )
    .action(async () => {
      const { runAlertReceiverFromEnv } = await import('../alerts/main');
      await runAlertReceiverFromEnv();
    });

  program
    .command('runner')
    .description(
      'Run a runner: build, test, migration and schema-rev commands on ROLLGATE_RUNNER_TASK_QUEUE (default rollgate-runner); artifacts to ROLLGATE_ARTIFACT_STORE. Needs no cloud or Temporal-admin credentials; commands get PATH, HOME, ROLLGATE_RUNNER_ENV_ALLOW and what the spec declares.',
    )
    .action(async () => {
      const { runRunnerFromEnv } = await import('../runner');
      await runRunnerFromEnv();
    });

  addReleaseCommands(program, { withClient, print, tokenOf, defaultUser, tokenHelp: TOKEN_HELP });
  return program;
}

/** `start train.yaml`: validate every member, start the train, optionally wait for its outcome. */
async function startTrainFile(
  file: string,
  o: { by: string; token?: string; wait?: boolean; taskQueue: string; runnerTaskQueue: string; json?: boolean },
  timeoutMs: number | undefined,
): Promise<void> {
  const train = loadTrainFile(file);
  await withClient(async (client) => {
    const token = tokenOf(o);
    const handle = await startTrain(client, train, {
      startedBy: o.by,
      taskQueue: o.taskQueue,
      runnerTaskQueue: o.runnerTaskQueue,
      ...(token ? { token } : {}),
    });
    if (!o.wait) return print(o.json, { id: handle.workflowId }, handle.workflowId);
    if (!o.json) process.stdout.write(`${handle.workflowId}: started, waiting for its outcome\n`);
    const r = await waitForTrain(client, handle.workflowId, { timeoutMs });
    const code = r.outcome === 'succeeded' ? EXIT_CODES.ok : EXIT_CODES[r.outcome];
    print(
      o.json,
      { id: handle.workflowId, outcome: r.outcome, exitCode: code, open: r.open, reason: r.reason },
      trainOutcomeLine(handle.workflowId, r, code),
    );
    process.exitCode = code;
  });
}

async function watchTrain(client: Client, trainId: string, o: { intervalMs: number; timeoutMs?: number; json?: boolean }): Promise<void> {
  const tty = process.stdout.isTTY && !o.json;
  const r = await waitForTrain(client, trainId, {
    ...o,
    onView: (v) => {
      if (o.json) process.stdout.write(`${JSON.stringify(v)}\n`);
      else process.stdout.write(`${tty ? '\x1b[2J\x1b[H' : ''}${formatTrain(v)}\n${tty ? '' : '\n'}`);
    },
  });
  const code = r.outcome === 'succeeded' ? EXIT_CODES.ok : EXIT_CODES[r.outcome];
  (o.json ? process.stderr : process.stdout).write(`${trainOutcomeLine(trainId, r, code)}\n`);
  process.exitCode = code;
}

function trainOutcomeLine(id: string, r: { outcome: string; open: boolean; reason: string }, code: number): string {
  return `${id}: ${r.outcome}${r.open ? ' (train still open)' : ''}: ${r.reason} [exit ${code}]`;
}

/** A pipeline declares environments; anything unreadable is left to loadSpecFile's errors. */
function isPipelineFile(file: string): boolean {
  try {
    return isPipelineDocument(parseYaml(readFileSync(file, 'utf8')));
  } catch {
    return false;
  }
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return 0;
      return 2;
    }
    if (err instanceof SpecError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    if (err instanceof UsageError || err instanceof ScheduleUsageError) {
      process.stderr.write(`rollgate: ${err.message}\n`);
      return 2;
    }
    if (err instanceof WorkflowUpdateFailedError) {
      const cause = (err.cause as Error | undefined)?.message ?? err.message;
      process.stderr.write(`rollgate: refused: ${cause}\n`);
      return 1;
    }
    process.stderr.write(`rollgate: ${(err as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`rollgate: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
