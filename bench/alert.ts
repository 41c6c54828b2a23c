/** Benchmark 2b: alert to revert (an Alertmanager webhook POST to the alert receiver). */
import { externalVerdictSignal } from '../src/contract';
import { startAlertReceiver } from '../src/alerts/receiver';
import { QUICK, client, cloudRun, inProcessWorker, median, moto, pct, proxy, report } from './common';
import { historyAfterRollback, midWave, revertTargets } from './breach';
import { RevertLandings, revertTimeline } from './revert-timeline';

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
  const { lambdas, runs, targets } = await revertTargets('alr', 5, 5);
  const stop = await inProcessWorker('bench-alert', proxy.url);
  const token = 'bench-alert-token-0123456789';
  const receiver = await startAlertReceiver(client, { port: 0, host: '127.0.0.1', token }, () => undefined);
  const n = QUICK ? 2 : 20;
  const all: number[] = [];
  const answered: number[] = [];
  const toHistory: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const { h, release, stable } = await midWave('alr', targets, 'bench-alert');
      const body = JSON.stringify({
        version: '4',
        status: 'firing',
        receiver: 'rollgate',
        groupLabels: { alertname: 'HighErrorRate' },
        alerts: [
          {
            status: 'firing',
            labels: { alertname: 'HighErrorRate', service: 'alr', release },
            annotations: { summary: 'bench breach' },
            startsAt: new Date().toISOString(),
          },
        ],
      });
      const landings = new RevertLandings(proxy, cloudRun, lambdas, runs, stable);
      const sentMs = Date.now();
      const post = fetch(`${receiver.url}/alertmanager`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body,
      }).then(async (r) => {
        answered.push(Date.now() - sentMs);
        if (r.status !== 200) throw new Error(`alert receiver answered ${r.status}: ${await r.text()}`);
      });
      const [landedMs] = await Promise.all([landings.all(), post]);
      all.push(landedMs - sentMs);
      const events = await historyAfterRollback(h);
      await landings.confirm(moto.url);
      toHistory.push(revertTimeline(events, externalVerdictSignal.name, sentMs, landings.landedMs, []).signalRpc);
    }
  } finally {
    await receiver.close();
    await stop();
  }
  report('alert', `alert to revert: POST -> all 10 reverted, p50 (${all.length} runs)`, median(all), 'ms', { op: '<=', v: 250 });
  report('alert', 'alert to revert: POST -> all 10 reverted, p95', pct(all, 95), 'ms');
  report('alert', '  POST answered by the receiver (read + verdict sent), p50', median(answered), 'ms');
  const v = median(toHistory.filter((x) => Number.isFinite(x)));
  if (Number.isFinite(v)) report('alert', '  POST sent -> verdict in history, p50', v, 'ms');
}
