import { rmSync } from 'node:fs';

export default async function globalTeardown(): Promise<void> {
  const servers = ((globalThis as Record<string, unknown>).__ROLLGATE_SERVERS__ ?? []) as { stop(): Promise<void> }[];
  await Promise.all(servers.map((s) => s.stop()));
  // This process's bundle (named by its pid, global-setup.ts): nothing reads it any more.
  if (process.env.ROLLGATE_TEST_BUNDLE) rmSync(process.env.ROLLGATE_TEST_BUNDLE, { force: true });
}
