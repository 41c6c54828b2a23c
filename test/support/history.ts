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
