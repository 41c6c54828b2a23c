/**
 * Custom checks: GET an HTTP endpoint that returns one number (plain text, or a field of a JSON
 * body) and compare it with a threshold in the "worse" direction. This is how RAG quality checks
 * ("retrieval drift <= 0.03 after deploy") and business KPIs gate a rollout.
 *
 * - pass:  value <= threshold (higher-is-worse) or value >= threshold (lower-is-worse);
 * - fail:  the other side of the threshold;
 * - inconclusive: the endpoint is unreachable, times out, answers non-2xx, or the answer is not a
 *   finite number (empty, "NaN", text, a missing JSON field). The reason says which, so the spec's
 *   no-data policy can extend the bake or fail; never a silent pass.
 *
 * The URL may carry {{revision}} (the canary version), {{baseline}} (the stable version) and
 * {{target}} (the target name), URL-encoded.
 */
import type { TargetSpec } from '../spec/schema';
import type { Verdict } from '../contract';
import type { Direction } from './statistical-judge';
import { OutboundRefused, outboundRequest } from '../security/outbound';
import { bodyExcerpt } from '../security/redact';
import type { UrlPolicy } from '../security/url-policy';

export interface CustomCheckSpec {
  /** Names the value in reasons ("drift"). */
  name: string;
  url: string;
  /** Dotted path into a JSON body ("metrics.drift", "results[0].value"); unset: the body is a plain number. */
  json_path?: string;
  threshold: number;
  direction: Direction;
  /** Per request, ms (default 10 s). */
  timeout_ms?: number;
  headers?: Record<string, string>;
  /** The worker's outbound URL policy (src/security/url-policy.ts); absent: only the hard refusals. */
  policy?: UrlPolicy;
}

export interface CustomCheckContext {
  target: TargetSpec;
  canaryVersion: string;
  baselineVersion: string;
}

export interface CustomCheckVerdict extends Verdict {
  value?: number;
}

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const MAX_BODY = 64 * 1024;

export function renderCheckUrl(url: string, ctx?: CustomCheckContext): string {
  if (!ctx) return url;
  const vars: Record<string, string> = {
    revision: ctx.canaryVersion,
    version: ctx.canaryVersion,
    baseline: ctx.baselineVersion,
    target: ctx.target.name,
  };
  return url.replace(/\{\{\s*([a-zA-Z_]+)\s*\}\}/g, (m, k: string) => (k in vars ? encodeURIComponent(vars[k]) : m));
}

/** Parse "a.b[0].c" and walk it; undefined when any step is missing. */
export function readJsonPath(body: unknown, path: string): unknown {
  const steps: (string | number)[] = [];
  for (const part of path.split('.')) {
    const m = /^([^[\]]*)((\[\d+\])*)$/.exec(part);
    if (!m) return undefined;
    if (m[1]) steps.push(m[1]);
    for (const idx of m[2].match(/\d+/g) ?? []) steps.push(Number(idx));
  }
  let cur: unknown = body;
  for (const s of steps) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[s];
  }
  return cur;
}

/** A finite number from a JSON value or text, or a description of what it was instead. */
function toNumber(v: unknown): { value: number } | { problem: string } {
  if (typeof v === 'number') return Number.isFinite(v) ? { value: v } : { problem: `not a finite number (${v})` };
  if (typeof v === 'string') {
    const s = v.trim();
    if (NUMBER.test(s)) return { value: Number(s) };
    return { problem: s === '' ? 'empty' : `not a number: "${bodyExcerpt(s, 40)}"` };
  }
  if (v === undefined) return { problem: 'missing' };
  return { problem: `not a number: ${bodyExcerpt(JSON.stringify(v) ?? String(v), 40)}` };
}

/** Reasons are one line: collapse whitespace from bodies and error messages. */
const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

function fmt(v: number): string {
  return String(Number(v.toPrecision(6)));
}

export async function runCustomCheck(check: CustomCheckSpec, ctx?: CustomCheckContext): Promise<CustomCheckVerdict> {
  const url = renderCheckUrl(check.url, ctx);
  const target = ctx?.target.name;
  const prefix = `${target ? `${target}: ` : ''}custom check ${check.name}`;
  const inconclusive = (why: string): CustomCheckVerdict => ({
    verdict: 'inconclusive',
    ...(target ? { target } : {}),
    metric: check.name,
    reason: oneLine(
      `${prefix}: no value (${why}) from ${url}; threshold ${check.direction === 'higher-is-worse' ? '<=' : '>='} ${fmt(check.threshold)}`,
    ),
  });
  let status: number;
  let text: string;
  let contentType: string;
  try {
    const res = await outboundRequest(url, {
      headers: { accept: 'application/json, text/plain;q=0.9', ...check.headers },
      timeoutMs: check.timeout_ms ?? 10_000,
      maxBodyBytes: MAX_BODY,
      policy: check.policy,
    });
    status = res.status;
    contentType = res.headers['content-type'] ?? '';
    text = res.text;
  } catch (err) {
    const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
    if (err instanceof OutboundRefused) return inconclusive(e.message);
    return inconclusive(
      e.name === 'TimeoutError'
        ? `timed out after ${check.timeout_ms ?? 10_000} ms`
        : `unreachable: ${e.code ?? e.cause?.code ?? e.cause?.message ?? e.message}`,
    );
  }
  // At most a short, redacted, one-line excerpt of a body enters a reason (and so history).
  if (status < 200 || status >= 300) return inconclusive(`HTTP ${status}${text.trim() ? `: ${bodyExcerpt(text, 80)}` : ''}`);
  let parsed: { value: number } | { problem: string };
  if (check.json_path !== undefined) {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return inconclusive(`body is not JSON (${contentType || 'no content-type'})`);
    }
    const r = toNumber(readJsonPath(body, check.json_path));
    parsed = 'problem' in r ? { problem: `field ${check.json_path} ${r.problem}` } : r;
  } else {
    parsed = toNumber(text);
  }
  if ('problem' in parsed) return inconclusive(parsed.problem);
  const v = parsed.value;
  const ok = check.direction === 'higher-is-worse' ? v <= check.threshold : v >= check.threshold;
  const cmp = check.direction === 'higher-is-worse' ? (ok ? '<=' : '>') : ok ? '>=' : '<';
  return {
    verdict: ok ? 'pass' : 'fail',
    ...(target ? { target } : {}),
    metric: check.name,
    value: v,
    reason: `${prefix}: ${check.name} ${fmt(v)} ${cmp} threshold ${fmt(check.threshold)} (${check.direction}) from ${url}`,
  };
}

/** Every check of a target, in parallel; combine with combineVerdicts (any fail fails). */
export function runCustomChecks(checks: CustomCheckSpec[], ctx?: CustomCheckContext): Promise<CustomCheckVerdict[]> {
  return Promise.all(checks.map((c) => runCustomCheck(c, ctx)));
}

/**
 * Preflight: the endpoint answers a number now (for the stable version: {{revision}} is the
 * baseline here, since the canary does not exist yet). Throws with the inconclusive reason.
 */
export async function preflightCustomCheck(check: CustomCheckSpec, target: TargetSpec, baselineVersion: string): Promise<number> {
  const v = await runCustomCheck(check, { target, canaryVersion: baselineVersion, baselineVersion });
  if (v.verdict === 'inconclusive' || v.value === undefined) throw new Error(`preflight: ${v.reason}`);
  return v.value;
}
