import type { WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';

/** The whole history as text, with every payload's data base64-decoded, for "never in history" checks. */
export async function historyText(handle: WorkflowHandle): Promise<string> {
  const json = historyToJSON(await handle.fetchHistory());
  const decoded: string[] = [json];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) {
        if (k === 'data' && typeof x === 'string') decoded.push(Buffer.from(x, 'base64').toString('utf8'));
        else walk(x);
      }
  };
  walk(JSON.parse(json));
  return decoded.join('\n');
}

/**
 * With ROLLGATE_RECORD_HISTORIES=1, save the closed workflow's history as test/histories/NAME.json
 * for the replay suite. Never overwrites: a recorded history is kept for as long as its workflow
 * version may still be running (record a new version under a new name).
 */
export async function recordHistory(handle: WorkflowHandle, name: string): Promise<void> {
  if (process.env.ROLLGATE_RECORD_HISTORIES !== '1') return;
  const { existsSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const file = join(__dirname, '..', 'histories', `${name}.json`);
  if (existsSync(file)) throw new Error(`${file} exists: recorded histories are never overwritten; use a new name`);
  writeFileSync(file, JSON.stringify(JSON.parse(historyToJSON(await handle.fetchHistory())), null, 1));
}
