/**
 * The lint fence around workflow code is an allow-list (eslint.config.mjs): a module in src/workflows
 * (and each allowed pure helper) imports values only from @temporalio/workflow, @temporalio/common,
 * other workflow files and the listed helpers; anything else only with `import type`. And no module
 * anywhere may take part in a value-import cycle (import-x/no-cycle). ESLint runs for real on probe
 * sources, with the repo's config, in a child process (test/support/lint-probe.mjs).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..');
const FENCE = 'rollgate/workflow-imports';
const CYCLE = 'import-x/no-cycle';

interface ProbeOutput {
  fence: { file: string; rules: (string | null)[]; messages: string[] }[];
  cycle: Record<string, (string | null)[]>;
  configFor: Record<string, Record<string, number | string>>;
}

function probe(input: { fence?: { file: string; code: string }[]; cycle?: Record<string, string>; configFor?: string[] }) {
  return new Promise<ProbeOutput>((ok, fail) => {
    const child = execFile(
      process.execPath,
      [join(ROOT, 'test', 'support', 'lint-probe.mjs')],
      { cwd: ROOT, maxBuffer: 16 * 1024 * 1024, timeout: 150_000 },
      (err, stdout, stderr) => (err ? fail(new Error(`lint probe failed: ${err.message}\n${stderr}`)) : ok(JSON.parse(stdout))),
    );
    child.stdin!.end(JSON.stringify(input));
  });
}

const inWorkflows = 'src/workflows/__probe__.ts';
const inV1 = 'src/workflows/v1/__probe__.ts';

/** Value imports that must be rejected, each with the file it is written in. */
const forbidden: [string, string][] = [
  [inWorkflows, "import { promString } from '../analysis/prometheus';\nexport const p = promString;\n"],
  [inWorkflows, "import { startRollout } from '../client';\nexport const p = startRollout;\n"],
  [
    inWorkflows,
    "import { startRollout, type RolloutHandle } from '../client';\nexport const p: unknown = [startRollout, {} as RolloutHandle];\n",
  ],
  [inWorkflows, "import { rolloutMetrics } from '../observability/metrics';\nexport const p = rolloutMetrics;\n"],
  [inWorkflows, "import { log } from '../observability/logger';\nexport const p = log;\n"],
  [inWorkflows, "import { readFileSync } from 'node:fs';\nexport const p = readFileSync;\n"],
  [inWorkflows, "import { createHash } from 'crypto';\nexport const p = createHash;\n"],
  [inWorkflows, "import { Client } from '@temporalio/client';\nexport const p = Client;\n"],
  [inWorkflows, "import { LambdaClient } from '@aws-sdk/client-lambda';\nexport const p = LambdaClient;\n"],
  [inWorkflows, "import { loadSpec } from '../spec/validate';\nexport const p = loadSpec;\n"],
  [inWorkflows, "import { z } from 'zod';\nexport const p = z;\n"],
  [inWorkflows, "export { startRollout } from '../client';\n"],
  [inWorkflows, "export * from '../activities';\n"],
  [inWorkflows, "export const p = () => import('../spec/duration');\n"],
  [inWorkflows, "// eslint-disable-next-line @typescript-eslint/no-require-imports\nexport const p = require('../spec/duration');\n"],
  [inV1, "import { loadSpec } from '../../spec/validate';\nexport const p = loadSpec;\n"],
  // The allowed helpers are fenced too, so a helper cannot bring I/O in behind the allow-list.
  ['src/spec/duration.ts', "import { readFileSync } from 'node:fs';\nexport const p = readFileSync;\n"],
  ['src/observability/workflow-sink.ts', "import { rolloutMetrics } from './metrics';\nexport const p = rolloutMetrics;\n"],
];

/** Imports that must pass the fence. */
const allowed: [string, string][] = [
  [inWorkflows, "import { defineSignal, sleep } from '@temporalio/workflow';\nexport const p = [defineSignal, sleep];\n"],
  [inWorkflows, "import { SearchAttributeType } from '@temporalio/common';\nexport const p = SearchAttributeType;\n"],
  [inWorkflows, "import { approveUpdate } from '../contract';\nexport const p = approveUpdate;\n"],
  [inWorkflows, "import { rolloutWorkflowV1 } from './v1/rollout';\nexport const p = rolloutWorkflowV1;\n"],
  [inWorkflows, "import { formatDuration, mustDurationMs } from '../spec/duration';\nexport const p = [formatDuration, mustDurationMs];\n"],
  [inWorkflows, "import { buildInput } from '../spec/commands';\nexport const p = buildInput;\n"],
  [inWorkflows, "import { combineVerdicts } from '../analysis/threshold-judge';\nexport const p = combineVerdicts;\n"],
  [inWorkflows, "import { emitRolloutEvent } from '../observability/workflow-sink';\nexport const p = emitRolloutEvent;\n"],
  [inWorkflows, "import type { RolloutEvent } from '../observability/events';\nexport type P = RolloutEvent;\n"],
  // Type-only imports of anything: erased at compile time, never in the workflow bundle.
  [inWorkflows, "import type { startRollout } from '../client';\nexport type P = typeof startRollout;\n"],
  [inWorkflows, "import { type Client } from '@temporalio/client';\nexport type P = Client;\n"],
  [inWorkflows, "import type * as Activities from '../activities';\nexport type P = typeof Activities;\n"],
  [inWorkflows, "export type { RolloutHandle } from '../client';\n"],
  [inV1, "import { approveUpdate } from '../../contract';\nexport const p = approveUpdate;\n"],
  [inV1, "import { mustDurationMs } from '../../spec/duration';\nexport const p = mustDurationMs;\n"],
];

/** Today's workflow code, linted as it is, passes the fence (the allow-list covers what is used). */
const todays = ['src/workflows/rollout.ts', 'src/contract/index.ts', 'src/workflows/bake.ts', 'src/workflows/v1/steps.ts'].map(
  (file): [string, string] => [file, readFileSync(join(ROOT, file), 'utf8')],
);

let out: ProbeOutput;
beforeAll(async () => {
  out = await probe({
    fence: [...forbidden, ...allowed, ...todays].map(([file, code]) => ({ file, code })),
    cycle: {
      'lib/a.ts': "import { b } from './b';\nexport const a = (): number => b() + 1;\n",
      'lib/b.ts': "import { a } from './a';\nexport const b = (): number => (a ? 1 : 0);\n",
      'lib/c.ts': "import { d } from './d';\nexport const c = (): number => d(1);\n",
      'lib/d.ts': "import type { c } from './c';\nexport const d = (x: number): ReturnType<typeof c> => x;\n",
    },
    configFor: ['src/workflows/rollout.ts', 'src/workflows/v1/rollout.ts', 'src/spec/commands.ts', 'src/client.ts'],
  });
}, 180_000);

const fenceHits = (i: number) => out.fence[i].rules.filter((r) => r === FENCE).length;

test('the fence rejects value imports that are not on the allow-list (Prometheus source, client, metrics, Node, SDKs, dynamic loads)', () => {
  const missed = forbidden.filter((_, i) => fenceHits(i) === 0).map(([file, code]) => `${file}: ${code.split('\n')[0]}`);
  expect(missed).toEqual([]);
  // The message says what to do.
  expect(out.fence[1].messages.join('\n')).toMatch(/'\.\.\/client' is not on the workflow allow-list.*import type/);
});

test('the fence accepts the workflow SDK, workflow files, the listed pure helpers, and `import type` of anything', () => {
  const offset = forbidden.length;
  const rejected = allowed
    .map(([file, code], i) => ({
      file,
      code,
      hits: out.fence[offset + i].messages.filter((_, j) => out.fence[offset + i].rules[j] === FENCE),
    }))
    .filter((r) => r.hits.length > 0);
  expect(rejected).toEqual([]);
  const todayOffset = forbidden.length + allowed.length;
  expect(todays.map(([file], i) => ({ file, rules: out.fence[todayOffset + i].rules }))).toEqual(
    todays.map(([file]) => ({ file, rules: [] })),
  );
});

test('import-x/no-cycle rejects a value-import cycle and lets a type-only back edge through', () => {
  expect(out.cycle).toEqual({ 'lib/a.ts': [CYCLE], 'lib/b.ts': [CYCLE], 'lib/c.ts': [], 'lib/d.ts': [] });
});

test('the repo config turns the fence on for workflow code and the helpers, and no-cycle everywhere', () => {
  const on = (file: string, rule: string) => out.configFor[file][rule];
  expect(on('src/workflows/rollout.ts', FENCE)).toBe(2);
  expect(on('src/workflows/v1/rollout.ts', FENCE)).toBe(2);
  expect(on('src/spec/commands.ts', FENCE)).toBe(2);
  expect(on('src/client.ts', FENCE)).toBeUndefined();
  for (const file of Object.keys(out.configFor)) expect({ file, cycle: on(file, CYCLE) }).toEqual({ file, cycle: 2 });
});
