/**
 * CloudWatch alarm state changes, as SNS delivers them (the SNS `Message` is the alarm's JSON:
 * AlarmName, AlarmDescription, NewStateValue, StateChangeTime, AlarmArn, Trigger). The service is
 * found, first match wins:
 *   1. a metric dimension `service` (any case), with optional `release` / `revision` dimensions
 *      (custom metrics published per service);
 *   2. tokens in the alarm description: `rollgate.service=checkout` (and `rollgate.release=r42`,
 *      `rollgate.revision=7`), for alarms on metrics without such dimensions;
 *   3. the Lambda dimensions `FunctionName` (+ `Resource` = `function:alias`, `ExecutedVersion` as
 *      the revision) with the alarm's region: the open rollout with that Lambda target.
 * Alarm tags are not part of the notification, so they cannot name the service.
 */
import { oneLine, PayloadError, type AlertClaim } from './claims';

interface Dimension {
  name?: unknown;
  value?: unknown;
}

const NAME = /^[A-Za-z0-9._:-]{1,128}$/;

export function cloudWatchAlarmClaim(message: string): AlertClaim {
  let alarm: Record<string, any>;
  try {
    alarm = JSON.parse(message);
  } catch {
    throw new PayloadError('Message: not the JSON of a CloudWatch alarm state change');
  }
  if (!alarm || typeof alarm !== 'object' || typeof alarm.AlarmName !== 'string' || typeof alarm.NewStateValue !== 'string')
    throw new PayloadError('Message: not a CloudWatch alarm state change (AlarmName, NewStateValue missing)');
  const dims = alarmDimensions(alarm.Trigger);
  const dim = (k: string) => {
    const d = dims.find((x) => x.name.toLowerCase() === k.toLowerCase());
    return d && NAME.test(d.value) ? d.value : undefined;
  };
  const tokens = descriptionTokens(typeof alarm.AlarmDescription === 'string' ? alarm.AlarmDescription : '');
  const region = typeof alarm.AlarmArn === 'string' ? alarm.AlarmArn.split(':')[3] || undefined : undefined;
  const fn = dim('FunctionName');
  const resource = dim('Resource');
  const alias = resource && fn && resource.startsWith(`${fn}:`) ? resource.slice(fn.length + 1) : undefined;
  const changed = typeof alarm.StateChangeTime === 'string' ? Date.parse(alarm.StateChangeTime) : NaN;
  const service = dim('service') ?? tokens.service;
  return {
    source: 'cloudwatch',
    name: oneLine(alarm.AlarmName, 100),
    firing: alarm.NewStateValue === 'ALARM',
    service,
    release: dim('service') ? dim('release') : tokens.release,
    revision: (dim('service') ? dim('revision') : tokens.revision) ?? dim('ExecutedVersion'),
    ...(!service && fn ? { lambda: { function: fn, region, ...(alias ? { alias } : {}) } } : {}),
    ...(Number.isFinite(changed) ? { sinceMs: changed } : {}),
    summary: oneLine(`${alarm.AlarmName}: ${alarm.NewStateReason ?? alarm.NewStateValue}`),
  };
}

/** The dimensions of a metric alarm, or of every metric of a metric-math alarm. */
function alarmDimensions(trigger: any): { name: string; value: string }[] {
  const lists: Dimension[][] = [];
  if (Array.isArray(trigger?.Dimensions)) lists.push(trigger.Dimensions);
  if (Array.isArray(trigger?.Metrics))
    for (const m of trigger.Metrics) if (Array.isArray(m?.MetricStat?.Metric?.Dimensions)) lists.push(m.MetricStat.Metric.Dimensions);
  return lists
    .flat()
    .filter((d) => typeof d?.name === 'string' && typeof d?.value === 'string')
    .map((d) => ({ name: d.name as string, value: d.value as string }));
}

function descriptionTokens(text: string): { service?: string; release?: string; revision?: string } {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/\brollgate\.(service|release|revision)=([A-Za-z0-9._:-]{1,128})/g)) out[m[1]] ??= m[2];
  return out;
}
