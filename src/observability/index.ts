/**
 * Worker observability in one call: the JSON logger as the Temporal Runtime logger (SDK, activity,
 * workflow and forwarded Core lines), the SDK's Prometheus exporter, and rollgate's own metrics
 * endpoint. Must run before the first NativeConnection.connect (Runtime.install rule).
 *
 * Environment:
 * - ROLLGATE_LOG_LEVEL: TRACE, DEBUG, INFO (default), WARN, ERROR.
 * - ROLLGATE_METRICS_ADDRESS: host:port of rollgate's /metrics and /healthz (default 127.0.0.1:9464;
 *   0.0.0.0:9464 in a container), `off` to disable.
 * - ROLLGATE_SDK_METRICS_ADDRESS: host:port of the SDK runtime metrics (default 127.0.0.1:9465), `off` to disable.
 */
import { Runtime, type InjectedSinks, type TelemetryOptions } from '@temporalio/worker';
import { JsonLogger, parseLogLevel } from './logger';
import { RolloutMetrics, rolloutMetricsSinks, sdkTelemetryOptions, splitAddress, startMetricsServer, type MetricsServer } from './metrics';
import type { RolloutMetricsSinks } from './workflow-sink';

export { JsonLogger } from './logger';
export { RolloutMetrics, metricsActivities, rolloutMetricsSinks, startMetricsServer } from './metrics';
export type { RolloutEvent } from './events';

export interface Observability {
  logger: JsonLogger;
  metrics: RolloutMetrics;
  /** Worker option `sinks` (the workflow-side `rolloutMetrics` feed). */
  sinks: InjectedSinks<RolloutMetricsSinks>;
  /** rollgate's /metrics endpoint, unless disabled. */
  server?: MetricsServer;
  sdkMetricsAddress?: string;
  /** /healthz answers 200 once set (after the worker polls), 503 before and while draining. */
  setReady(ready: boolean): void;
  close(): Promise<void>;
}

export async function setupObservabilityFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  o: { write?: (line: string) => void } = {},
): Promise<Observability> {
  const logger = new JsonLogger({ level: parseLogLevel(env.ROLLGATE_LOG_LEVEL), write: o.write, base: { component: 'rollgate-worker' } });
  const sdkAddress = env.ROLLGATE_SDK_METRICS_ADDRESS || '127.0.0.1:9465';
  const telemetryOptions: TelemetryOptions = {
    logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} },
    ...(sdkAddress === 'off' ? {} : sdkTelemetryOptions(sdkAddress)),
  };
  if (sdkAddress !== 'off') splitAddress(sdkAddress, 'ROLLGATE_SDK_METRICS_ADDRESS');
  try {
    Runtime.install({ logger, telemetryOptions });
  } catch (err) {
    throw new Error(
      `cannot start the Temporal runtime with SDK metrics on ${sdkAddress} (${(err as Error).message}); set ROLLGATE_SDK_METRICS_ADDRESS to a free host:port, or "off"`,
    );
  }

  const metrics = new RolloutMetrics();
  let ready = false;
  const address = env.ROLLGATE_METRICS_ADDRESS || '127.0.0.1:9464';
  const server =
    address === 'off'
      ? undefined
      : await startMetricsServer(metrics, { ...splitAddress(address, 'ROLLGATE_METRICS_ADDRESS'), healthy: () => ready }).catch(
          (err: Error) => {
            throw new Error(
              `cannot serve metrics on ${address} (${err.message}); set ROLLGATE_METRICS_ADDRESS to a free host:port, or "off"`,
            );
          },
        );
  return {
    logger,
    metrics,
    sinks: rolloutMetricsSinks(metrics),
    server,
    sdkMetricsAddress: sdkAddress === 'off' ? undefined : sdkAddress,
    setReady: (r) => (ready = r),
    close: async () => {
      ready = false;
      await server?.close();
    },
  };
}
