/** Benchmark 2b: alert to revert (an Alertmanager webhook POST to the alert receiver). */
import { performance } from 'node:perf_hooks';
import { createSampleFunction } from '../src/dev/lambda-fixtures';
import { startRollout } from '../src/client';
import type { TargetSpec } from '../src/spec/schema';
import { abortSignal, statusQuery } from '../src/contract';
import { startAlertReceiver } from '../src/alerts/receiver';
import { QUICK, client, cloudRunTargets, inProcessWorker, lambdaTargets, median, moto, pct, report, sleep, spec } from './common';
import { type RevertTimes, waitAllStable, type BreachPhases, breachPhases } from './breach';

// ---- 2b: alert to revert ------------------------------------------------------------------------

/**
 * The same mid-wave rollout over 10 targets as benchmark 2, but the breach arrives as an
 * Alertmanager webhook POST (documented payload version 4, bearer token) to the alert receiver in
 * this process, which reads the rollout and sends the failing verdict: from the POST to every
 * target 100 % on stable in moto and the fake.
 */
export async function benchAlert() {
  console.log(
    '2b. alert to revert (10 targets = 5 Lambda in moto + 5 Cloud Run in the fake, mid-wave; breach delivered as an\n' +
      '    Alertmanager webhook POST to the alert receiver; until every target is 100 % on stable as seen by moto and the fake)',
  );
  const lambdas = lambdaTargets('alr', 1, 5);
  for (const t of lambdas) await createSampleFunction(moto.url, t);
  const runs5 = cloudRunTargets('alr', 5);
  const targets: TargetSpec[] = [...lambdas, ...runs5];
  const stop = await inProcessWorker('bench-alert', moto.url);
  const token = 'bench-alert-token-0123456789';
  const receiver = await startAlertReceiver(client, { port: 0, host: '127.0.0.1', token }, () => undefined);
  const runs = QUICK ? 2 : 20;
  const all: RevertTimes[] = [];
  const answered: number[] = [];
  const phases: BreachPhases[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const s = spec('alr', targets, [targets.slice(1).map((t) => t.name)], [50, 100], '1 hour', {
        canary: { targets: [targets[0].name], weight: 10, bake: '0 seconds' },
      });
      const h = await startRollout(client, s, { startedBy: 'bench', taskQueue: 'bench-alert' });
      for (;;) {
        const st = await h.query(statusQuery);
        if (st.stage === 'wave:w1' && st.bakeEndsAtMs) break;
        await sleep(50);
      }
      const status = await h.query(statusQuery);
      const stable = new Map(status.targets.map((t) => [t.name, t.stableVersion!]));
      const body = JSON.stringify({
        version: '4',
        status: 'firing',
        receiver: 'rollgate',
        groupLabels: { alertname: 'HighErrorRate' },
        alerts: [
          {
            status: 'firing',
            labels: { alertname: 'HighErrorRate', service: 'alr', release: s.release },
            annotations: { summary: 'bench breach' },
            startsAt: new Date().toISOString(),
          },
        ],
      });
      const t0 = performance.now();
      const t0Wall = Date.now();
      const post = fetch(`${receiver.url}/alertmanager`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      }).then(async (r) => {
        answered.push(performance.now() - t0);
        if (r.status !== 200) throw new Error(`alert receiver answered ${r.status}: ${await r.text()}`);
      });
      const [times] = await Promise.all([waitAllStable(lambdas, runs5, stable, t0), post]);
      all.push(times);
      for (let k = 0; (await h.query(statusQuery)).state !== 'paused' && k < 600; k++) await sleep(50);
      phases.push(breachPhases((await h.fetchHistory()).events ?? [], t0Wall, t0Wall + times.all));
      await h.signal(abortSignal);
      await h.result();
    }
  } finally {
    await receiver.close();
    await stop();
  }
  report('alert', `alert to revert: POST -> all 10 reverted, p50 (${all.length} runs)`, median(all.map((x) => x.all)), 'ms', {
    op: '<=',
    v: 250,
  });
  report(
    'alert',
    'alert to revert: POST -> all 10 reverted, p95',
    pct(
      all.map((x) => x.all),
      95,
    ),
    'ms',
  );
  report('alert', '  POST answered by the receiver (read + verdict sent), p50', median(answered), 'ms');
  const phase = median(phases.map((x) => x.signalled).filter((v) => Number.isFinite(v)));
  if (Number.isFinite(phase)) report('alert', '  POST sent -> verdict in history, p50', phase, 'ms');
}
