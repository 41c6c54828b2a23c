/**
 * `rollgate` CLI. Exit codes: 0 ok, 2 invalid input (bad spec, bad arguments), 1 anything else
 * (refused, not found, cannot connect). Errors are one line that says what to do.
 */
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import { Command, CommanderError } from 'commander';
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { loadSpecFile, resolveSpecPaths, SpecError } from '../spec/validate';
import { connectClient } from '../temporal/connection';
import { getStatus, RolloutRefusedError, startRollout } from '../client';
import { abortSignal, approveUpdate, pauseSignal, rejectUpdate, resumeSignal, TASK_QUEUE, type RolloutResult } from '../workflows/messages';
import { formatStatus } from './format';

class UsageError extends Error {}

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

export function buildProgram(): Command {
  const program = new Command('rollgate')
    .description('Durable, gated rollouts for AWS Lambda and Google Cloud Run on Temporal.')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('validate')
    .argument('<file>', 'rollout spec (YAML or JSON)')
    .option('--json', 'print the normalized spec as JSON')
    .description('Check a spec without a server; every problem is listed with its field path.')
    .action((file: string, o: { json?: boolean }) => {
      const spec = loadSpecFile(file);
      print(o.json, spec, `${file}: ok (${spec.service} ${spec.release}, ${spec.targets.length} target(s), ${spec.waves.length} wave(s))`);
    });

  program
    .command('start')
    .argument('<file>', 'rollout spec (YAML or JSON)')
    .option('--by <name>', 'who starts it (recorded for the four-eyes rule)', defaultUser())
    .option('--wait', 'wait until the rollout ends and print its outcome')
    .option('--task-queue <queue>', 'worker task queue', process.env.ROLLGATE_TASK_QUEUE || TASK_QUEUE)
    .option('--json', 'machine-readable output')
    .description('Validate the spec, then start its rollout; prints the rollout id.')
    .action(async (file: string, o: { by: string; wait?: boolean; taskQueue: string; json?: boolean }) => {
      const spec = resolveSpecPaths(loadSpecFile(file), dirname(file));
      await withClient(async (client) => {
        const handle = await startRollout(client, spec, { startedBy: o.by, taskQueue: o.taskQueue });
        if (!o.wait) return print(o.json, { id: handle.workflowId }, handle.workflowId);
        const res = (await handle.result()) as RolloutResult;
        print(o.json, res, `${handle.workflowId}: ${res.state}${res.reason ? ` (${res.reason})` : ''}`);
        if (res.state !== 'succeeded') process.exitCode = 1;
      });
    });

  program
    .command('status')
    .argument('<id>', 'rollout id (rollout-SERVICE)')
    .option('--json', 'machine-readable output')
    .description('Stage, state and per-target versions and weights.')
    .action(async (id: string, o: { json?: boolean }) => {
      await withClient(async (client) => {
        const s = await getStatus(client, id);
        print(o.json, s, formatStatus(s));
      });
    });

  program
    .command('approve')
    .argument('<id>', 'rollout id')
    .requiredOption('--by <name>', 'approver (must be in the spec and not the starter)')
    .option('--comment <text>', 'note recorded with the approval')
    .description('Approve the wave the rollout is waiting for.')
    .action(async (id: string, o: { by: string; comment?: string }) => {
      await withClient(async (client) => {
        const msg = await client.workflow.getHandle(id).executeUpdate(approveUpdate, { args: [{ by: o.by, comment: o.comment }] });
        console.log(`${id}: ${msg}`);
      });
    });

  program
    .command('reject')
    .argument('<id>', 'rollout id')
    .requiredOption('--by <name>', 'approver')
    .requiredOption('--reason <text>', 'why (sent in the alert)')
    .description('Reject the wave the rollout is waiting for; the rollout reverts and pauses.')
    .action(async (id: string, o: { by: string; reason: string }) => {
      await withClient(async (client) => {
        const msg = await client.workflow.getHandle(id).executeUpdate(rejectUpdate, { args: [{ by: o.by, reason: o.reason }] });
        console.log(`${id}: ${msg}`);
      });
    });

  for (const [name, signal, text] of [
    ['pause', pauseSignal, 'Hold the rollout at its current weights; bake timers stop.'],
    ['resume', resumeSignal, 'Continue a paused rollout; after a rollback, retry from the canary.'],
    ['abort', abortSignal, 'Revert every touched target and close the rollout.'],
  ] as const) {
    program
      .command(name)
      .argument('<id>', 'rollout id')
      .option('--by <name>', 'operator', defaultUser())
      .option('--reason <text>', 'recorded in the history')
      .description(text)
      .action(async (id: string, o: { by: string; reason?: string }) => {
        await withClient(async (client) => {
          const handle = client.workflow.getHandle(id);
          const desc = await handle.describe().catch((err) => {
            throw new RolloutRefusedError(`no running rollout ${id} (${(err as Error).message})`);
          });
          if (desc.status.name !== 'RUNNING') throw new RolloutRefusedError(`rollout ${id} is closed (${desc.status.name.toLowerCase()})`);
          await handle.signal(signal as typeof pauseSignal, { by: o.by, reason: o.reason });
          console.log(`${id}: ${name} sent`);
        });
      });
  }

  program
    .command('worker')
    .description('Run a worker (connection from TEMPORAL_ADDRESS/TEMPORAL_NAMESPACE, AWS endpoints from AWS_ENDPOINT_URL_*).')
    .action(async () => {
      const { runWorkerFromEnv } = await import('../worker');
      await runWorkerFromEnv();
    });

  return program;
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
    if (err instanceof UsageError) {
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
