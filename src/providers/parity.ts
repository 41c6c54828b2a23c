/**
 * Canary/production parity: the canary proves a release only for targets configured like it. Before
 * any traffic moves, each target's deployed stable configuration is compared with the canary
 * target's of the same provider. Pure: providers read and normalize (src/providers/*), this file
 * compares and words the differences. What differs by design (region, names, ARNs, subnet ids,
 * the image or code) is left out by the providers' normalization, never compared here.
 */
import type { TargetSpec } from '../spec/schema';
import { isReleaseContractKey } from '../contract/release';

/**
 * A target's configuration reduced to what may enter workflow history: plain settings in clear,
 * environment values as salted hashes (src/providers/fingerprint.ts), secret references by name.
 */
export interface ParityConfig {
  provider: TargetSpec['provider'];
  /** Field -> a comparable text ("512", "arm64", "none"). Fields absent on a provider are absent here. */
  settings: Record<string, string>;
  /** Env key -> salted hash of the value (never the value); contract keys (RELEASE_ID, ...) excluded. */
  env: Record<string, string>;
  /** Env key -> the secret it references (`secretsmanager:NAME`, `ssm:/path`, `SECRET:VERSION`). */
  secretRefs: Record<string, string>;
}

export interface ParityDifference {
  /** `memory`, `env FEATURE_X`, `secret DB_PASSWORD`, ... */
  field: string;
  /** The target's value (a hash for env values, `(missing)` when it lacks the field). */
  target: string;
  /** The canary target's value. */
  canary: string;
}

export interface ParityReport {
  target: string;
  /** The canary target it was compared with. */
  canary: string;
  differences: ParityDifference[];
  /** One line naming target, canary and every field, e.g. `eu-west-1 differs from canary us-east-1: memory 1024 vs 512`. */
  message: string;
}

/** Keys every release sets itself: they differ between releases by design. */
const MISSING = '(missing)';

export function compareParity(canary: ParityConfig, target: ParityConfig): ParityDifference[] {
  const out: ParityDifference[] = [];
  for (const field of sortedUnion(canary.settings, target.settings)) {
    const a = target.settings[field] ?? MISSING;
    const b = canary.settings[field] ?? MISSING;
    if (a !== b) out.push({ field, target: a, canary: b });
  }
  for (const key of sortedUnion(canary.env, target.env)) {
    if (isReleaseContractKey(key)) continue;
    const a = target.env[key] ?? MISSING;
    const b = canary.env[key] ?? MISSING;
    if (a !== b) out.push({ field: `env ${key}`, target: a, canary: b });
  }
  for (const key of sortedUnion(canary.secretRefs, target.secretRefs)) {
    const a = target.secretRefs[key] ?? MISSING;
    const b = canary.secretRefs[key] ?? MISSING;
    if (a !== b) out.push({ field: `secret ${key}`, target: a, canary: b });
  }
  return out;
}

/** `eu-west-1 differs from canary us-east-1: memory 1024 vs 512; env keys missing: FEATURE_X; ...` */
export function parityMessage(target: string, canary: string, diffs: ParityDifference[]): string {
  const parts: string[] = [];
  const envMissing: string[] = [];
  const envExtra: string[] = [];
  const envChanged: string[] = [];
  const secrets: string[] = [];
  for (const d of diffs) {
    if (d.field.startsWith('env ')) {
      const key = d.field.slice(4);
      if (d.target === MISSING) envMissing.push(key);
      else if (d.canary === MISSING) envExtra.push(key);
      else envChanged.push(`${key} ${d.target} vs ${d.canary}`);
    } else if (d.field.startsWith('secret ')) secrets.push(`${d.field.slice(7)} ${d.target} vs ${d.canary}`);
    else parts.push(`${d.field} ${d.target} vs ${d.canary}`);
  }
  if (envMissing.length) parts.push(`env keys missing: ${envMissing.join(', ')}`);
  if (envExtra.length) parts.push(`env keys not on the canary: ${envExtra.join(', ')}`);
  if (envChanged.length) parts.push(`env values differ (salted hash): ${envChanged.join(', ')}`);
  if (secrets.length) parts.push(`secret references differ: ${secrets.join(', ')}`);
  return `${target} differs from canary ${canary}: ${parts.join('; ')}`;
}

/** A message longer than this (hundreds of env keys) is cut: it travels in status, history and alerts. */
export const MAX_PARITY_MESSAGE = 1_000;

export function parityReport(target: string, canary: string, canaryConfig: ParityConfig, targetConfig: ParityConfig): ParityReport {
  const differences = compareParity(canaryConfig, targetConfig);
  let message = differences.length ? parityMessage(target, canary, differences) : '';
  if (message.length > MAX_PARITY_MESSAGE)
    message = `${message.slice(0, MAX_PARITY_MESSAGE)}… (${differences.length} differing fields in all)`;
  return { target, canary, differences, message };
}

/**
 * Which target each target is compared with: the first canary target of the same provider (a
 * Lambda function is never compared with a Cloud Run service). Targets of a provider the canary
 * does not cover have no reference (`unchecked`).
 */
export function parityPairs(
  targets: TargetSpec[],
  canaryNames: string[],
): { pairs: { target: TargetSpec; canary: TargetSpec }[]; unchecked: string[] } {
  const byName = new Map(targets.map((t) => [t.name, t]));
  const reference = new Map<string, TargetSpec>();
  for (const n of canaryNames) {
    const t = byName.get(n);
    if (t && !reference.has(t.provider)) reference.set(t.provider, t);
  }
  const pairs: { target: TargetSpec; canary: TargetSpec }[] = [];
  const unchecked: string[] = [];
  for (const t of targets) {
    const canary = reference.get(t.provider);
    if (!canary) unchecked.push(t.name);
    else if (canary.name !== t.name) pairs.push({ target: t, canary });
  }
  return { pairs, unchecked };
}

/**
 * A Lambda env value that names a Secrets Manager secret or an SSM parameter, reduced to what does
 * not differ by design between regions and accounts (`secretsmanager:NAME`, `ssm:parameter/PATH`);
 * undefined for any other value. The value is then compared by name, in clear: it is a reference.
 */
export function lambdaSecretRef(value: string): string | undefined {
  const m = /^arn:aws[a-z-]*:(secretsmanager|ssm):[a-z0-9-]*:\d*:(secret:|parameter)(.+)$/.exec(value);
  if (!m) return undefined;
  return m[1] === 'secretsmanager' ? `secretsmanager:${m[3]}` : `ssm:parameter${m[3]}`;
}

/** A Lambda layer version ARN without its region and account: `NAME:VERSION`. */
export function lambdaLayerName(arn: string): string {
  const m = /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d+:layer:(.+)$/.exec(arn);
  return m ? m[1] : arn;
}

function sortedUnion(a: Record<string, string>, b: Record<string, string>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
}
