/**
 * Starting a server on a port that another process took between the pick and the bind (test files
 * start servers three at a time): the start is retried on a new port instead of failing the file.
 * Real moto_server on loopback; the "other process" is a TCP server holding the first port.
 */
import { createServer, type Server } from 'node:net';
import { freePort, onFreePort, startMotoOn, type MotoServer } from '../src/dev/processes';

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
