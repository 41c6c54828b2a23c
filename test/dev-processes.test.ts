/**
 * Starting a server on a port that another process took between the pick and the bind (test files
 * start servers three at a time): the start is retried on a new port instead of failing the file.
 * Real moto_server on loopback; the "other process" is a TCP server holding the first port.
 */
import { createServer, type Server } from 'node:net';
import {
  freePort,
  onFreePort,
  startAllOrNone,
  startMoto,
  startMotoOn,
  startTemporalDevServer,
  startTemporalDevServerOn,
  type MotoServer,
} from '../src/dev/processes';

let holder: Server;
let heldPort: number;
let moto: MotoServer | undefined;

beforeAll(async () => {
  // Accepts and drops every connection (a readiness probe that reaches it must not hang).
  holder = createServer((socket) => socket.destroy());
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  heldPort = (holder.address() as { port: number }).port;
});

afterAll(async () => {
  await moto?.stop();
  await new Promise((r) => holder.close(r));
});

test('moto on a port already taken fails, naming it (what a lost pick looked like)', async () => {
  await expect(onFreePort(startMotoOn, async () => heldPort, 1)).rejects.toThrow(/Address already in use/);
});

test('a taken port is retried on a new one: moto comes up on the second pick', async () => {
  const picks: number[] = [];
  moto = await onFreePort(startMotoOn, async () => {
    const p = picks.length === 0 ? heldPort : await freePort();
    picks.push(p);
    return p;
  });
  expect(picks).toHaveLength(2);
  expect(picks[0]).toBe(heldPort);
  expect(moto.url).toBe(`http://127.0.0.1:${picks[1]}`);
  expect((await fetch(`${moto.url}/moto-api/`)).status).toBeLessThan(500);
});

test('picked ports sit below the ephemeral range, where outgoing connections never hold them', async () => {
  const picks = await Promise.all(Array.from({ length: 50 }, () => freePort()));
  for (const p of picks) expect(p).toBeLessThan(32_768);
});

// A port lost to another of our own servers: that server answers the readiness probe, so without
// waiting for the bind the start "succeeded" and handed back a server that was not its own.
test('moto on a port another moto serves fails instead of adopting that moto', async () => {
  const first = moto!;
  const port = Number(new URL(first.url).port);
  await expect(startMotoOn(port)).rejects.toThrow(/in use/i);
  expect((await fetch(`${first.url}/moto-api/`)).status).toBeLessThan(500); // the owner is untouched
});

test('a dev server on a port another dev server serves fails, and a pick retries it', async () => {
  const owner = await startTemporalDevServer();
  try {
    await expect(startTemporalDevServerOn({ port: owner.port })).rejects.toThrow(/in use/i);
    const picks: number[] = [];
    const second = await onFreePort(
      (port) => startTemporalDevServerOn({ port }),
      async () => {
        const p = picks.length === 0 ? owner.port : await freePort();
        picks.push(p);
        return p;
      },
    );
    try {
      expect(picks).toEqual([owner.port, second.port]);
      expect(second.child.exitCode).toBeNull();
    } finally {
      await second.stop();
    }
  } finally {
    await owner.stop();
  }
}, 120_000);

test('startAllOrNone stops the servers that started when another failed', async () => {
  let started: MotoServer | undefined;
  const moto = startMoto().then((m) => (started = m));
  const failing = Promise.reject(new Error('cloud fake failed'));
  await expect(startAllOrNone([moto, failing] as const)).rejects.toThrow('cloud fake failed');
  expect(started).toBeDefined();
  expect(started!.child.exitCode !== null || started!.child.signalCode !== null).toBe(true);
});
