/** The demo's stand-in for Slack: a loopback HTTP receiver that prints each alert. */
import { createServer } from 'node:http';

export async function startWebhookReceiver(onAlert: (body: { text: string }) => void) {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try {
        onAlert(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        // not JSON: ignore
      }
      res.writeHead(200);
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/slack`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
