/** The release registry's pure decisions and the pipeline file's validation (no server). */
import {
  applyClosedRun,
  environmentRefusal,
  pinMismatch,
  promotionPin,
  promotionRefusal,
  releaseGate,
  rollbackPlan,
  vetoOf,
  type ClosedRollout,
} from '../src/workflows/release-records';
import type { DeclaredPipeline, ReleaseRecord } from '../src/contract';
import { formatReleases } from '../src/cli/releases';
import { environmentSpec, validatePipeline } from '../src/spec/pipeline';
import { SpecError } from '../src/spec/validate';

const DIGEST = 'a'.repeat(64);
const IMAGE_DIGEST = 'b'.repeat(64);
const T0 = Date.parse('2026-12-01T10:00:00Z');
const envs = [{ name: 'staging' }, { name: 'prod', soakMs: 60_000 }];

function closed(over: Partial<ClosedRollout> = {}): ClosedRollout {
  return {
    service: 'shop',
    release: 'r1',
    environment: 'staging',
    rolloutId: 'rollout-shop',
    runId: 'run-1',
    outcome: 'succeeded',
    startedAtMs: T0 - 30_000,
    closedAtMs: T0,
    artifact: { digest: DIGEST, image: `eu/app@sha256:${IMAGE_DIGEST}` },
    targets: [{ name: 'eu', provider: 'aws-lambda', version: '2', previous: '1' }],
    verdicts: ['verify eu: 1 probe(s) ok'],
    approvals: [],
    startedBy: 'carol',
    ...over,
  };
}

test('a succeeded run records the promotion; the same run read twice changes nothing', () => {
  const once = applyClosedRun([], closed());
  expect(once).toHaveLength(1);
  expect(once[0].environments[0]).toMatchObject({ environment: 'staging', outcome: 'succeeded', promotedAtMs: T0 });
  const twice = applyClosedRun(once, closed({ closedAtMs: T0 + 999 }));
  expect(twice).toEqual(once);
});

test('a later revert of the promoted release marks it rolled back and keeps the promoted versions', () => {
  const promoted = applyClosedRun([], closed());
  const reverted = applyClosedRun(promoted, closed({ runId: 'run-2', outcome: 'rolled-back', closedAtMs: T0 + 5000, targets: [] }));
  expect(reverted[0].environments[0]).toMatchObject({ outcome: 'rolled-back', rolledBackAtMs: T0 + 5000, promotedAtMs: T0 });
  expect(reverted[0].environments[0].targets).toEqual(promoted[0].environments[0].targets);
});

test('a run that closed before its build records nothing; a rollback to a release marks it restored', () => {
  expect(applyClosedRun([], closed({ artifact: undefined, outcome: 'failed' }))).toEqual([]);
  const prod = applyClosedRun(applyClosedRun([], closed()), closed({ environment: 'prod', runId: 'run-3' }));
  const restored = applyClosedRun(prod, closed({ environment: 'prod', runId: 'run-4', rollbackTo: 'r1', closedAtMs: T0 + 1 }));
  expect(restored[0].environments.find((e) => e.environment === 'prod')).toMatchObject({ runId: 'run-3', restoredAtMs: T0 + 1 });
});

test('promotion refusals say which gate: never ran, did not succeed, rolled back, soak too short, vetoed', () => {
  expect(promotionRefusal([], 'r1', envs, 'prod', T0)).toBe('release r1 has not run in staging, the environment before prod');
  expect(promotionRefusal(applyClosedRun([], closed({ outcome: 'failed' })), 'r1', envs, 'prod', T0 + 120_000)).toBe(
    'release r1 did not succeed in staging (its last rollout there ended failed)',
  );
  expect(promotionRefusal(applyClosedRun([], closed({ outcome: 'rolled-back' })), 'r1', envs, 'prod', T0 + 120_000)).toBe(
    'release r1 was rolled back in staging at 2026-12-01T10:00:00.000Z',
  );
  const ok = applyClosedRun([], closed());
  expect(promotionRefusal(ok, 'r1', envs, 'prod', T0 + 20_000)).toBe('release r1 has soaked 20s in staging; prod requires 1m: 40s left');
  expect(promotionRefusal(ok, 'r1', envs, 'prod', T0 + 60_000)).toBeUndefined();
  const vetoed: ReleaseRecord[] = [{ ...ok[0], veto: { by: 'dana', verified: false, reason: 'leaks memory', atMs: T0 } }];
  expect(promotionRefusal(vetoed, 'r1', envs, 'prod', T0 + 60_000)).toMatch(
    /^release r1 is vetoed \(by dana \(unverified\) at .*: leaks memory\)$/,
  );
  expect(promotionRefusal(ok, 'r1', envs, 'qa', T0)).toBe('the pipeline has no environment "qa" (it has staging, prod)');
  expect(promotionRefusal([], 'r9', envs, 'staging', T0)).toBeUndefined(); // the first environment builds it
});

test('a veto covers every release with the same digest, the zip or the image', () => {
  const records: ReleaseRecord[] = [
    { release: 'r1', artifact: { digest: DIGEST }, environments: [], veto: { by: 'dana', verified: true, reason: 'bad', atMs: T0 } },
  ];
  expect(vetoOf(records, [DIGEST])?.release).toBe('r1');
  expect(vetoOf(records, ['c'.repeat(64)])).toBeUndefined();
  const byImage: ReleaseRecord[] = [{ ...records[0], artifact: { digest: IMAGE_DIGEST, image: `eu/app@sha256:${IMAGE_DIGEST}` } }];
  const rebuilt = [...byImage, { release: 'r2', artifact: { digest: DIGEST, image: `eu/app@sha256:${IMAGE_DIGEST}` }, environments: [] }];
  expect(promotionRefusal(rebuilt, 'r2', envs, 'staging', T0)).toMatch(/^release r2 deploys the artifact of vetoed release r1/);
});

test('rollback plans: the promoted versions, or why not', () => {
  expect(rollbackPlan([], 'r1', 'prod')).toEqual({ refusal: 'release r1 never ran in prod' });
  const failed = applyClosedRun([], closed({ environment: 'prod', outcome: 'failed' }));
  expect(rollbackPlan(failed, 'r1', 'prod')).toEqual({ refusal: 'release r1 never promoted in prod (ended failed)' });
  const ok = applyClosedRun([], closed({ environment: 'prod' }));
  expect(rollbackPlan(ok, 'r1', 'prod')).toMatchObject({ versions: [{ name: 'eu', version: '2' }] });
});

test('a re-run that rebuilt the release: the promotion pins the digest that succeeded in staging, the veto covers both', () => {
  const REBUILT = 'c'.repeat(64);
  // The first staging run (digest A) was aborted; the re-run built B and succeeded.
  const first = applyClosedRun([], closed({ outcome: 'aborted', runId: 'run-1' }));
  const rerun = applyClosedRun(first, closed({ runId: 'run-2', closedAtMs: T0 + 10, artifact: { digest: REBUILT } }));
  expect(rerun[0].environments[0]).toMatchObject({ runId: 'run-2', outcome: 'succeeded', artifact: { digest: REBUILT } });
  expect(promotionPin(rerun, 'r1', envs, 'prod')).toEqual({ digest: REBUILT });
  expect(promotionPin(first, 'r1', envs, 'prod')).toBeUndefined(); // did not succeed: nothing to pin
  expect(promotionPin(rerun, 'r1', envs, 'staging')).toBeUndefined(); // the first environment builds
  const vetoed: ReleaseRecord[] = [{ ...rerun[0], veto: { by: 'dana', verified: false, reason: 'bad', atMs: T0 } }];
  expect(vetoOf(vetoed, [REBUILT])?.release).toBe('r1');
  expect(vetoOf(vetoed, [DIGEST])?.release).toBe('r1');
  // A rollback goes back to what the environment deployed.
  const prod = applyClosedRun(rerun, closed({ environment: 'prod', runId: 'run-3', artifact: { digest: REBUILT } }));
  expect(rollbackPlan(prod, 'r1', 'prod')).toMatchObject({ artifact: { digest: REBUILT } });
  // `rollgate releases` / `history --releases` shows each environment's digest.
  const text = formatReleases({ service: 'shop', releases: prod, refused: [] }, T0 + 1000);
  expect(text).toMatch(new RegExp(`staging: succeeded.*\\n    artifact ${REBUILT}\\n`));
  expect(text).toMatch(new RegExp(`prod: succeeded.*\\n    artifact ${REBUILT}\\n`));
});

const declared: DeclaredPipeline = {
  environments: [
    { name: 'staging', targets: ['aws-lambda:us-east-1:shop-staging:live'] },
    { name: 'prod', targets: ['aws-lambda:eu-west-1:shop-prod:live', 'cloud-run:p:us-central1:shop-prod'] },
  ],
};

test("a run counts for an environment only when its targets are that environment's", () => {
  const stagingTargets = { targetIdentities: ['aws-lambda:us-east-1:shop-staging:live'] };
  expect(environmentRefusal(declared, closed(stagingTargets))).toBeUndefined();
  expect(environmentRefusal(declared, closed({ environment: 'prod', ...stagingTargets }))).toBe(
    "the run names environment prod, but its targets (aws-lambda:us-east-1:shop-staging:live) are staging's",
  );
  expect(environmentRefusal(declared, closed({ environment: 'prod', targetIdentities: ['cloud-run:p:us-central1:shop-prod'] }))).toMatch(
    /^the run names environment prod, but its targets \(cloud-run:p:us-central1:shop-prod\) are not prod's/,
  );
  expect(
    environmentRefusal(declared, closed({ environment: 'prod', targetIdentities: [...declared.environments[1].targets].reverse() })),
  ).toBeUndefined();
  expect(environmentRefusal(declared, closed({ environment: 'qa', ...stagingTargets }))).toMatch(/does not have \(it has staging, prod\)/);
  expect(environmentRefusal(undefined, closed(stagingTargets))).toMatch(/^no pipeline declared/);
});

test('the gate: a promotion pin must be what the environment before verified; a rollback target release vetoed by name', () => {
  const REBUILT = 'c'.repeat(64);
  const first = applyClosedRun([], closed({ outcome: 'aborted', runId: 'run-1' }));
  const rerun = applyClosedRun(first, closed({ runId: 'run-2', artifact: { digest: REBUILT } }));
  expect(releaseGate(rerun, declared, { release: 'r1', digests: [REBUILT], environment: 'prod', pinned: true })).toEqual({});
  expect(releaseGate(rerun, declared, { release: 'r1', digests: [DIGEST], environment: 'prod', pinned: true }).pinRefusal).toBe(
    `pinnedArtifact: ${DIGEST} is not what release r1 verified in staging (${REBUILT})`,
  );
  expect(releaseGate(first, declared, { release: 'r1', digests: [DIGEST], environment: 'prod', pinned: true }).pinRefusal).toBe(
    'release r1 has no succeeded run in staging, the environment before prod',
  );
  expect(releaseGate(rerun, undefined, { release: 'r1', digests: [REBUILT], environment: 'prod', pinned: true }).pinRefusal).toMatch(
    /^no pipeline declared/,
  );
  const veto = { by: 'dana', verified: false, reason: 'bad', atMs: T0 };
  const vetoed: ReleaseRecord[] = [{ ...rerun[0], veto }];
  expect(releaseGate(vetoed, declared, { release: 'r1', digests: [], byRelease: true }).veto).toEqual({ release: 'r1', veto });
  expect(releaseGate(vetoed, declared, { release: 'r1', digests: [] }).veto).toBeUndefined();
});

test('pin mismatches name the field', () => {
  const image = `eu/app@sha256:${IMAGE_DIGEST}`;
  const pin = { digest: DIGEST, image };
  expect(pinMismatch(pin, pin, { sha256: DIGEST, image })).toBeUndefined();
  expect(pinMismatch(pin, { digest: 'c'.repeat(64), image }, {})).toBe(
    `artifact digest ${'c'.repeat(64)} differs from pinnedArtifact.digest ${DIGEST}`,
  );
  expect(pinMismatch(pin, pin, { sha256: 'c'.repeat(64) })).toBe(
    `artifact.sha256 ${'c'.repeat(64)} differs from pinnedArtifact.digest ${DIGEST}`,
  );
  expect(pinMismatch(pin, pin, { image: `eu/app@sha256:${'d'.repeat(64)}` })).toMatch(
    /^artifact\.image eu\/app@sha256:d+ differs from pinnedArtifact\.image/,
  );
});

const lambdaTarget = (name: string) => ({ name, provider: 'aws-lambda', region: 'eu-west-1', function: 'shop-fn', alias: 'live' });
function pipeline(over: Record<string, unknown> = {}, prod: Record<string, unknown> = {}) {
  return {
    service: 'shop',
    schema_rev: 7,
    artifact: { file: 'shop.zip' },
    approvers: ['alice'],
    environments: [
      { name: 'staging', targets: [lambdaTarget('stg')], canary: { targets: ['stg'], weight: 10, bake: '1s' } },
      {
        name: 'prod',
        soak: '1 minute',
        approval: true,
        targets: [lambdaTarget('eu'), lambdaTarget('us')],
        canary: { targets: ['eu'], weight: 10, bake: '1s' },
        waves: [{ name: 'rest', targets: ['us'], steps: [100], bake: '1s' }],
        ...prod,
      },
    ],
    ...over,
  };
}

function problems(raw: unknown): string[] {
  try {
    validatePipeline(raw);
  } catch (err) {
    if (err instanceof SpecError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

test('pipeline files: each environment is a rollout spec; errors name the pipeline field', () => {
  expect(problems(pipeline())).toEqual([]);
  expect(problems(pipeline({}, { soak: 'soon' }))).toEqual([
    'environments[1].soak: must be a duration such as "30 seconds", "5m" or "1 hour"',
  ]);
  expect(problems(pipeline({}, { canary: { targets: ['nowhere'], weight: 10, bake: '1s' } }))).toEqual([
    'environments[1].canary.targets[0]: unknown target "nowhere"',
  ]);
  expect(problems(pipeline({}, { name: 'staging' }))).toEqual(['environments[1].name: duplicate environment "staging"']);
  expect(problems(pipeline({ release: 'r1' }))).toEqual(['release: the release is given by the command (--release / --to)']);
  expect(problems(pipeline({ approvers: [] }))).toEqual(['environments[1].waves[0].approval: needs approvers in the spec']);
  expect(problems(pipeline({ schema_rev: undefined }))).toEqual(['schema_rev: is required']);
  const first = pipeline();
  (first.environments[0] as Record<string, unknown>).soak = '1m';
  expect(problems(first)).toEqual(['environments[0].soak: the first environment has no environment before it to soak in']);
});

test("an environment's spec: shared settings, its targets, approval on every wave", () => {
  const p = validatePipeline(pipeline(), 'pipeline', '/srv/shop');
  const spec = environmentSpec(p, 'prod', 'r7');
  expect(spec).toMatchObject({ service: 'shop', release: 'r7', schema_rev: '7', approvers: ['alice'] });
  expect(spec.targets.map((t) => t.name)).toEqual(['eu', 'us']);
  expect(spec.waves.map((w) => w.approval)).toEqual([true]);
  expect(spec.artifact.file).toBe('/srv/shop/shop.zip');
  expect(environmentSpec(p, 'staging', 'r7').waves).toEqual([]);
});

test('rollgate validate takes a pipeline file and names the field of a problem', async () => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const { stringify } = await import('yaml');
  const { main } = await import('../src/cli/main');
  const dir = mkdtempSync(join(tmpdir(), 'pipeline-'));
  writeFileSync(join(dir, 'shop.zip'), 'zip');
  const run = async (raw: unknown) => {
    const file = join(dir, 'rollgate-pipeline.yaml');
    writeFileSync(file, stringify(raw));
    let out = '';
    const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => ((out += String(s)), true));
    const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => ((out += String(s)), true));
    try {
      return { code: await main(['validate', file]), out };
    } finally {
      o.mockRestore();
      e.mockRestore();
    }
  };
  expect(await run(pipeline())).toEqual({
    code: 0,
    out: expect.stringContaining('ok (pipeline of shop: staging → prod (soak 1 minute) (approval))'),
  });
  const bad = await run(pipeline({}, { soak: 'soon' }));
  expect(bad.code).toBe(2);
  expect(bad.out).toContain('environments[1].soak: must be a duration');
  const missing = await run(pipeline({ artifact: { file: 'gone.zip' } }));
  expect(missing.code).toBe(2);
  expect(missing.out).toMatch(/artifact\.file: file not found: \/.*\/gone\.zip/);
});
