/** `rollgate alert-receiver`: the alert receiver alone (no worker), until SIGINT/SIGTERM. */
import { connectClient, connectionSettingsFromEnv } from '../temporal/connection';
import { alertReceiverConfigFromEnv, startAlertReceiver } from './receiver';

export async function runAlertReceiverFromEnv(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (!env.ROLLGATE_ALERT_RECEIVER_PORT) throw new Error('ROLLGATE_ALERT_RECEIVER_PORT: set the port to listen on');
  const config = alertReceiverConfigFromEnv(env);
  const client = await connectClient(connectionSettingsFromEnv(env));
  const receiver = await startAlertReceiver(client, config);
  console.error(`rollgate alert-receiver: listening on ${receiver.url} (POST /alertmanager, /sns)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await receiver.close();
  await client.connection.close();
}
