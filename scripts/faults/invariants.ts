/**
 * The rollback invariant of issue 9, read from the emulators (moto's aliases and versions, the
 * Cloud Run fake's services and revisions), never from the workflow's own status. Each check
 * returns one line per problem; the runner turns them into violations.
 */
import type { CloudRunTargetSpec, LambdaTargetSpec, RolloutSpec, TargetSpec } from '../../src/spec/schema';
import { DEFAULT_TAG } from '../../src/providers/cloud-run';
import type { HistoryEntry } from '../../src/contract';
import type { ScheduleEnv } from './env';

export type Invariant =
  | 'stable' // 1: stopped rollouts serve 100 % on the stable version
  | 'late-write' // 1: ... and stay so
  | 'promoted' // 2: succeeded rollouts serve 100 % on the new version
  | 'one-version' // 3: at most one new version / revision per target per release
  | 'alerts' // 4: every alert delivered or its failure recorded
  | 'stall' // 5: waits only on an announced human decision
  | 'operator' // rollback-failed: abort closes, resume retries
  | 'workflow-failed' // the execution itself failed (no saga, no alert)
  | 'harness'; // the checker could not run the schedule

export interface Violation {
  invariant: Invariant;
  detail: string;
}

const TYPE_LATEST = 'TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST';
const short = (n: string) => String(n ?? '').slice(String(n ?? '').lastIndexOf('/') + 1);

interface CloudRunView {
  /** Served (trafficStatuses), percent > 0 only. */
  served: Record<string, number>;
  /** Asked for (spec traffic), percent > 0 only: the last write that landed. */
  asked: Record<string, number>;
  /** Tags on rollgate's tag name, in spec or status, as TAG:REVISION. */
  rollgateTags: string[];
  revisions: string[];
}

export function cloudRunView(env: ScheduleEnv, t: CloudRunTargetSpec): CloudRunView {
  const s = env.cloudRun.getServiceState(t.project, t.region, t.service);
  if (!s) return { served: {}, asked: {}, rollgateTags: [], revisions: [] };
  const latest = short(s.latestReadyRevision);
  const split = (xs: Record<string, any>[]) => {
    const out: Record<string, number> = {};
    for (const x of xs) {
      const rev = x.type === TYPE_LATEST ? latest : x.revision;
      if ((x.percent ?? 0) > 0) out[rev] = (out[rev] ?? 0) + x.percent;
    }
    return out;
  };
  const tag = t.tag ?? DEFAULT_TAG;
  const tags = [...(s.traffic as Record<string, any>[]), ...(s.trafficStatuses as Record<string, any>[])]
    .filter((x) => x.tag === tag)
    .map((x) => `${x.tag}:${x.revision || latest}`);
  return {
    served: split(s.trafficStatuses),
    asked: split(s.traffic),
    rollgateTags: [...new Set(tags)],
    revisions: env.cloudRun.revisionNames(t.project, t.region, t.service),
  };
}

const fmt = (x: Record<string, number>) =>
  Object.entries(x)
    .map(([k, v]) => `${k}:${v}`)
    .join(',') || 'nothing';

/** What a target serves, in one line, for reports. */
export async function describeTarget(env: ScheduleEnv, t: TargetSpec): Promise<string> {
  if (t.provider === 'aws-lambda') {
    const a = await env.aliasState(t);
    return `alias ${t.alias} -> ${a.version}${Object.keys(a.weights).length ? ` + ${JSON.stringify(a.weights)}` : ''}`;
  }
  const v = cloudRunView(env, t);
  return `served ${fmt(v.served)}, asked ${fmt(v.asked)}${v.rollgateTags.length ? `, tags ${v.rollgateTags.join(',')}` : ''}`;
}

/** (1) Every target 100 % on its stable version, no routing config, no rollgate tag. */
export async function checkStable(env: ScheduleEnv, spec: RolloutSpec): Promise<string[]> {
  const problems: string[] = [];
  for (const t of spec.targets) {
    const stable = env.stable[t.name];
    if (t.provider === 'aws-lambda') {
      const a = await env.aliasState(t as LambdaTargetSpec);
      if (a.version !== stable || Object.keys(a.weights).length > 0)
        problems.push(
          `${t.name}: lambda alias ${t.alias} -> ${a.version} ${JSON.stringify(a.weights)}, expected 100 % on stable version ${stable}`,
        );
    } else {
      const v = cloudRunView(env, t as CloudRunTargetSpec);
      const ok = (x: Record<string, number>) => Object.keys(x).length === 1 && x[stable] === 100;
      if (!ok(v.served) || !ok(v.asked) || v.rollgateTags.length)
        problems.push(
          `${t.name}: cloud-run serves ${fmt(v.served)} (asked ${fmt(v.asked)}${v.rollgateTags.length ? `, tag ${v.rollgateTags.join(',')}` : ''}), expected 100 % on stable revision ${stable} and no ${DEFAULT_TAG} tag`,
        );
    }
  }
  return problems;
}

/** (2) Every target 100 % on the release's new version. */
export async function checkPromoted(env: ScheduleEnv, spec: RolloutSpec): Promise<string[]> {
  const problems: string[] = [];
  for (const t of spec.targets) {
    if (t.provider === 'aws-lambda') {
      const [next] = await env.releaseVersions(t, spec.release);
      const a = await env.aliasState(t);
      if (!next || a.version !== next || Object.keys(a.weights).length > 0)
        problems.push(
          `${t.name}: lambda alias ${t.alias} -> ${a.version} ${JSON.stringify(a.weights)}, expected 100 % on new version ${next ?? '(none published)'}`,
        );
    } else {
      const v = cloudRunView(env, t);
      const next = v.revisions.filter((r) => r !== env.stable[t.name]);
      const ok = (x: Record<string, number>) => next.length === 1 && Object.keys(x).length === 1 && x[next[0]] === 100;
      if (!ok(v.served) || !ok(v.asked))
        problems.push(
          `${t.name}: cloud-run serves ${fmt(v.served)} (asked ${fmt(v.asked)}), expected 100 % on new revision ${next.join('|') || '(none)'}`,
        );
    }
  }
  return problems;
}

/** (3) At most one new version (Lambda: by RELEASE_ID) / revision (Cloud Run) per target for this release. */
export async function checkOneVersion(env: ScheduleEnv, spec: RolloutSpec): Promise<string[]> {
  const problems: string[] = [];
  for (const t of spec.targets) {
    const made =
      t.provider === 'aws-lambda'
        ? await env.releaseVersions(t, spec.release)
        : cloudRunView(env, t).revisions.filter((r) => r !== env.stable[t.name]);
    if (made.length > 1)
      problems.push(
        `${t.name}: ${made.length} new ${t.provider === 'aws-lambda' ? 'versions' : 'revisions'} for release ${spec.release}: ${made.join(', ')}`,
      );
  }
  return problems;
}

const ALERT_RECORD = /^(\S+) alert (delivered \(HTTP \d+\)|NOT delivered: )/;

/**
 * (4) Every alert the rollout sent was delivered (the receiver has it) or its failure is recorded;
 * every rollback (not an abort) and every early failure sent one; a rollback-failed alert names
 * the targets whose revert failed.
 */
export function checkAlerts(env: ScheduleEnv, history: HistoryEntry[], o: { finalState: string; brokenReverts: string[] }): string[] {
  const problems: string[] = [];
  const records = history
    .filter((e) => e.kind === 'alert')
    .map((e) => ALERT_RECORD.exec(e.text))
    .filter((m): m is RegExpExecArray => !!m);
  const received = env.webhook.received.map((r) => r.body?.rollgate?.event as string | undefined);
  const count = (xs: (string | undefined)[], e: string) => xs.filter((x) => x === e).length;
  for (const event of new Set(records.map((m) => m[1]))) {
    const delivered = records.filter((m) => m[1] === event && m[2].startsWith('delivered')).length;
    if (count(received, event) < delivered)
      problems.push(`${delivered} "${event}" alert(s) recorded as delivered, the webhook received ${count(received, event)}`);
  }
  for (const event of new Set(received)) {
    if (!event) continue;
    if (!records.some((m) => m[1] === event))
      problems.push(`the webhook received a "${event}" alert that the rollout's history does not record`);
  }
  const rollbacks = history.filter(
    (e) => e.kind === 'stage' && e.text.startsWith('stage rollback: ') && !e.text.startsWith('stage rollback: aborted'),
  ).length;
  const rollbackAlerts = records.filter((m) => m[1] === 'rolled-back' || m[1] === 'rollback-failed').length;
  if (rollbackAlerts < rollbacks)
    problems.push(`${rollbacks} rollback(s) but ${rollbackAlerts} rolled-back/rollback-failed alert(s) sent or recorded as failed`);
  if (o.finalState === 'failed' && !records.some((m) => m[1] === 'failed'))
    problems.push('rollout failed but no "failed" alert was sent or recorded');
  for (const body of env.webhook.received.map((r) => r.body).filter((b) => b?.rollgate?.event === 'rollback-failed'))
    for (const t of o.brokenReverts)
      if (!String(body.text).includes(t) && !(body.rollgate?.revertedTargets ?? []).includes(t))
        problems.push(`rollback-failed alert does not name target ${t}: ${String(body.text).slice(0, 200)}`);
  return problems;
}
