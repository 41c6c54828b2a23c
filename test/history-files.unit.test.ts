/**
 * Recorded histories (test/histories) are never overwritten: a committed one is what a running
 * workflow of that version recorded, and the replay suite must keep it. Every recorder goes through
 * `saveHistoryFile` (test/support/history.ts), which refuses an existing name.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { temporal } from '@temporalio/proto';
import { saveHistoryFile } from './support/history';

const history = (id: string) => ({ events: [{ eventId: id }] }) as unknown as temporal.api.history.v1.IHistory;

test('saveHistoryFile writes a new name and refuses an existing one, leaving it as it was', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rollgate-histories-'));
  saveHistoryFile('lock-v9', history('1'), dir);
  const first = readFileSync(join(dir, 'lock-v9.json'), 'utf8');
  expect(JSON.parse(first)).toEqual({ events: [{ eventId: '1' }] });
  expect(() => saveHistoryFile('lock-v9', history('2'), dir)).toThrow(
    `${join(dir, 'lock-v9.json')} exists: recorded histories are never overwritten; use a new name`,
  );
  expect(readFileSync(join(dir, 'lock-v9.json'), 'utf8')).toBe(first);
  writeFileSync(join(dir, 'other.json'), 'kept');
  expect(() => saveHistoryFile('other', history('3'), dir)).toThrow(/exists/);
  expect(readFileSync(join(dir, 'other.json'), 'utf8')).toBe('kept');
});

test('no test writes into test/histories except through saveHistoryFile', () => {
  const dir = __dirname;
  const offenders = readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .filter((f) => {
      const src = readFileSync(join(dir, f), 'utf8');
      // A write whose path is built from the histories folder: join(__dirname, 'histories', ...).
      return /writeFileSync\(\s*join\(\s*__dirname\s*,\s*(['"]\.\.['"]\s*,\s*)?['"]histories['"]/.test(src);
    });
  expect(offenders).toEqual([]);
});
