/**
 * Release trains under seeded fault schedules, CI-sized: the same code as `npm run faults --
 * --schedules 3 --seed 1 --trains`, against the suite's dev server and moto. Each schedule is a
 * train of two or three generated cross-cloud members with their own faults (breaches, verdicts,
 * aborts, broken reverts) and the train's (a pause, an abort while a member waits for approval);
 * every member's targets are checked in moto and the Cloud Run fake. The test fails on any violation.
 */
import { connectShared, runSchedules, seedsOf, summaryLine, violationLines } from '../scripts/faults/report';
import { DEFAULT_RUN_OPTIONS } from '../scripts/faults/runner';
import { runTrainSchedule } from '../scripts/faults/train-runner';

const SEEDS = seedsOf(1, Number(process.env.ROLLGATE_TRAIN_FAULT_SCHEDULES || 3));

test(`${SEEDS.length} train fault schedules keep the rollback invariant for every member (checked in the emulators)`, async () => {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const shared = await connectShared({
    temporalAddress: process.env.ROLLGATE_TEST_TEMPORAL!,
    motoUrl: process.env.ROLLGATE_TEST_MOTO!,
    bundlePath: process.env.ROLLGATE_TEST_BUNDLE!,
    stateDir: process.env.ROLLGATE_TEST_STATE!,
  });
  try {
    const results = await runSchedules(SEEDS, shared, DEFAULT_RUN_OPTIONS, 3, runTrainSchedule);
    const lines = results.flatMap((r) => violationLines(r, { kills: false, trains: true }));
    console.log(
      [
        ...results.map(
          (r) =>
            `seed ${r.seed}: ${r.outcome} in ${(r.durationMs / 1000).toFixed(1)} s [${r.shape}] [${r.faults}]\n  ${r.trace.join('\n  ')}`,
        ),
        ...lines,
        summaryLine(results),
      ].join('\n'),
    );
    // Every train ran to a close of its own (not stalled, not a harness failure), and nothing broke the invariant.
    for (const r of results) expect(['succeeded', 'rolled-back', 'aborted', 'failed']).toContain(r.outcome);
    expect(lines).toEqual([]);
  } finally {
    await shared.close();
  }
}, 600_000);
