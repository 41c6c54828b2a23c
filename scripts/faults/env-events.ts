/**
 * The scheduled events that act on the environment rather than on a workflow (a breach, slow Cloud
 * Run operations, broken reverts, a worker SIGKILL, a dev-server restart), fired the same way by the
 * rollout driver (runner.ts) and the train driver (train-runner.ts).
 */
import type { TargetSpec } from '../../src/spec/schema';
import type { ScheduleEnv } from './env';
import type { TimedAction } from './fault-gen';
import { breakReverts } from './provider-faults';

export interface EventContext {
  env: ScheduleEnv;
  trace(line: string): void;
  /** Run `fn` after `ms` even after the pipeline stopped (a kill's restart, a server restart). */
  survivor(fn: () => Promise<void>): void;
  /** True once the schedule is over (a killed worker is then not started again). */
  done(): boolean;
  target(name: string): TargetSpec;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Fires `a` when it is an environment event and says so; false for a workflow action (the caller's). */
export function fireEnvironmentEvent(a: TimedAction, cx: EventContext): boolean {
  switch (a.kind) {
    case 'breach':
      cx.trace(`breach: new version of ${a.targets.join(', ')} fails 30 % of requests`);
      for (const t of a.targets) cx.env.breaching.add(t);
      return true;
    case 'slow-operations':
      cx.trace(`slow Cloud Run operations: ${a.polls} polls`);
      cx.env.cloudRun.knobs.operationPolls = a.polls;
      return true;
    case 'break-reverts': {
      const t = cx.target(a.target);
      cx.trace(`break every traffic write (so every revert) of ${t.name}`);
      breakReverts(cx.env, t);
      return true;
    }
    case 'server-restart':
      cx.survivor(async () => {
        cx.trace(`dev server restarting (down for ${a.downMs} ms)`);
        await cx.env.shared.restartServer!(a.downMs);
        cx.trace('dev server restarted on the same SQLite file');
      });
      return true;
    case 'kill':
      cx.survivor(async () => {
        if (!(await cx.env.killWorker())) return;
        cx.trace(`worker SIGKILLed, restart in ${a.restartAfterMs} ms`);
        await sleep(a.restartAfterMs);
        if (cx.done()) return cx.trace('(worker not restarted: the schedule is over)');
        await cx.env.startWorker();
        cx.trace('worker restarted');
      });
      return true;
    default:
      return false;
  }
}
