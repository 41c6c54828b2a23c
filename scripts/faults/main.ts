/**
 * Randomized fault schedules (issue 9 part C):
 *
 *   npm run faults -- --schedules N --seed S [--json] [--concurrency C] [--kills] [--restarts] [--verbose]
 *                     [--trains] [--temporal HOST:PORT --moto URL]
 *
 * Each schedule (seed S+i) builds a random valid cross-cloud spec and a seeded fault schedule, runs
 * it on a real Temporal dev server, moto behind the fault proxy and the Cloud Run fake, and checks
 * the rollback invariant in the emulators. With --trains each schedule is a release train of two or
 * three generated members instead (scripts/faults/train-runner.ts), checked member by member. One line per violation (with the seed that reproduces
 * that schedule alone), then `N schedules, V invariant violations`; exit 1 on any violation.
 * Without --temporal/--moto it starts both on loopback (state in .state/faults/).
 *
 * Load mode (issue 9 part D, scripts/faults/load.ts):
 *
 *   npm run faults -- --load N [--breach-share 0.1] [--seed S] [--json] [--cloud-run-share 0.3]
 *                     [--in-process] [--timeout-ms MS]
 *   npm run faults -- --load 200 --fleet 2 [--kill-after-ms 20000]   # fleet failover (issue 12 item 5)
 *
 * N concurrent rollouts on one worker (with --fleet, on W workers of which the first is SIGKILLed
 * mid-run: the table adds the failover stall p50/p99/max read from each rollout's history), a seeded share of them breaching mid-wave; prints a table
 * (breach-to-revert p50/p99, wall time, start rate, worker RSS), one line per violation (JSON rows
 * with --json), then `N rollouts, V invariant violations`; exit 1 on any violation.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { startMoto, startRestartableDevServer, startTemporalDevServer, type Managed } from '../../src/dev/processes';
import { DEFAULT_RUN_OPTIONS, runSchedule } from './runner';
import { runTrainSchedule } from './train-runner';
import { connectShared, jsonRows, runSchedules, seedsOf, summaryLine, violationLines } from './report';
import {
  DEFAULT_LOAD_OPTIONS,
  fleetWorkerOptions,
  loadJsonRows,
  loadSummaryLine,
  loadTable,
  loadViolationLines,
  loadWorkerOptions,
  runLoad,
} from './load';

function parseArgs(argv: string[]) {
  const o = {
    schedules: 20,
    seed: 1,
    json: false,
    concurrency: 3,
    kills: false,
    restarts: false,
    trains: false,
    verbose: false,
    temporal: '',
    moto: '',
    stallMs: 0,
    timeoutMs: 0,
    load: 0,
    breachShare: DEFAULT_LOAD_OPTIONS.breachShare,
    cloudRunShare: DEFAULT_LOAD_OPTIONS.cloudRunShare,
    inProcess: false,
    fleet: 0,
    killAfterMs: 20_000,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--schedules') o.schedules = Number(val());
    else if (a === '--seed') o.seed = Number(val());
    else if (a === '--concurrency') o.concurrency = Number(val());
    else if (a === '--json') o.json = true;
    else if (a === '--kills') o.kills = true;
    else if (a === '--restarts') o.restarts = true;
    else if (a === '--trains') o.trains = true;
    else if (a === '--verbose' || a === '-v') o.verbose = true;
    else if (a === '--temporal') o.temporal = val();
    else if (a === '--moto') o.moto = val();
    else if (a === '--stall-ms') o.stallMs = Number(val());
    else if (a === '--timeout-ms') o.timeoutMs = Number(val());
    else if (a === '--load') o.load = Number(val());
    else if (a === '--breach-share') o.breachShare = Number(val());
    else if (a === '--cloud-run-share') o.cloudRunShare = Number(val());
    else if (a === '--in-process') o.inProcess = true;
    else if (a === '--fleet') o.fleet = Number(val());
    else if (a === '--kill-after-ms') o.killAfterMs = Number(val());
    else if (a === '--help' || a === '-h') {
      console.log(
        'usage: npm run faults -- --schedules N --seed S [--json] [--concurrency C] [--kills] [--restarts] [--trains] [--verbose] [--temporal HOST:PORT --moto URL]\n' +
          '       npm run faults -- --load N [--breach-share 0.1] [--seed S] [--json] [--cloud-run-share 0.3] [--in-process] [--timeout-ms MS]\n' +
          '                     [--fleet W [--kill-after-ms MS]]   (W deploy workers; the first is SIGKILLed MS after the starts)',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (o.trains && o.load) throw new Error('--trains runs schedules, not --load');
  if (o.fleet && (o.fleet < 2 || !o.load || o.inProcess))
    throw new Error('--fleet W needs W >= 2 and --load N (child workers, not --in-process)');
  for (const k of ['schedules', 'seed', 'concurrency', 'load', 'fleet', 'killAfterMs'] as const)
    if (!Number.isInteger(o[k]) || o[k] < 0) throw new Error(`--${k} must be a non-negative integer`);
  for (const [k, v] of [
    ['breach-share', o.breachShare],
    ['cloud-run-share', o.cloudRunShare],
  ] as const)
    if (!(v >= 0 && v <= 1)) throw new Error(`--${k} must be between 0 and 1`);
  return o;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  process.env.AWS_ACCESS_KEY_ID ??= 'testing';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'testing';
  const stateDir = resolve(__dirname, '..', '..', '.state', 'faults', String(process.pid));
  mkdirSync(stateDir, { recursive: true });
  const started: Managed[] = [];
  const log = (s: string) => process.stderr.write(`${s}\n`);
  let exitCode = 0;
  try {
    const t0 = Date.now();
    const [temporal, moto, bundle] = await Promise.all([
      // Load mode keeps the dev server's state in memory (no restarts; SQLite on disk is slower).
      args.temporal
        ? { address: args.temporal }
        : args.load
          ? startTemporalDevServer({})
          : startRestartableDevServer(join(stateDir, 'temporal.db')),
      args.moto ? { url: args.moto } : startMoto(),
      bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: quietLogger }),
    ]);
    for (const s of [temporal, moto]) if ('stop' in s) started.push(s as unknown as Managed);
    const bundlePath = join(stateDir, 'workflow-bundle.js');
    writeFileSync(bundlePath, bundle.code);
    const restartable = 'restart' in temporal ? temporal : undefined;
    const shared = {
      ...(await connectShared({ temporalAddress: temporal.address, motoUrl: moto.url, bundlePath, stateDir })),
      ...(restartable ? { restartServer: (downMs: number) => restartable.restart(downMs) } : {}),
    };
    if (args.load) {
      log(`faults: servers ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; load mode: ${args.load} rollouts`);
      const o = { seed: args.seed, breachShare: args.breachShare };
      const summary = await runLoad(shared, {
        ...DEFAULT_LOAD_OPTIONS,
        rollouts: args.load,
        breachShare: args.breachShare,
        cloudRunShare: args.cloudRunShare,
        seed: args.seed,
        inProcess: args.inProcess,
        ...(args.timeoutMs ? { timeoutMs: args.timeoutMs } : {}),
        // A fleet keeps the production sticky-queue timeout: it is what moves a dead worker's rollouts on.
        workerOptions: args.fleet ? fleetWorkerOptions(args.load) : loadWorkerOptions(args.load),
        ...(args.fleet ? { fleet: { workers: args.fleet, killAfterMs: args.killAfterMs } } : {}),
        log,
      });
      await shared.close();
      for (const line of loadTable(summary, o)) console.log(line);
      for (const line of args.json ? loadJsonRows(summary, o) : loadViolationLines(summary, o)) console.log(line);
      console.log(loadSummaryLine(summary));
      log(`faults: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      exitCode = summary.violations ? 1 : 0;
    } else {
      log(
        `faults: servers ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${args.schedules} ${args.trains ? 'train ' : ''}schedule(s) from seed ${args.seed}, ${args.concurrency} at a time${args.kills ? ', with worker SIGKILLs' : ''}`,
      );
      const opts = {
        ...DEFAULT_RUN_OPTIONS,
        kills: args.kills,
        restarts: args.restarts,
        ...(args.stallMs ? { stallMs: args.stallMs } : {}),
        ...(args.timeoutMs ? { timeoutMs: args.timeoutMs } : {}),
        log: args.verbose ? log : undefined,
      };
      const results = await runSchedules(
        seedsOf(args.seed, args.schedules),
        shared,
        opts,
        args.concurrency,
        args.trains ? runTrainSchedule : runSchedule,
        (r) => {
          log(
            `faults: seed ${r.seed}: ${r.outcome} in ${(r.durationMs / 1000).toFixed(1)} s, ${r.violations.length} violation(s) [${r.shape}] [${r.faults}]`,
          );
          for (const line of args.json ? jsonRows(r, args) : violationLines(r, args)) console.log(line);
          if (r.violations.length && !args.json) for (const t of r.trace) log(`    ${t}`);
        },
      );
      await shared.close();
      console.log(summaryLine(results));
      log(`faults: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      if (results.some((r) => r.violations.length)) exitCode = 1;
    }
  } catch (err) {
    console.error(`faults: ${(err as Error).stack ?? err}`);
    exitCode = 2;
  } finally {
    await Promise.all(started.map((s) => s.stop()));
  }
  process.exit(exitCode);
}

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: (m: string) => console.error(m), log: noop };

void main();
