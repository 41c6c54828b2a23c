import { activeFreeze, zonedToUtc } from '../src/spec/freeze';
import type { FreezeWindow } from '../src/spec/schema';

const at = (iso: string) => Date.parse(iso);

test('zonedToUtc handles offsets and DST', () => {
  expect(new Date(zonedToUtc('2026-07-01T12:00', 'Europe/Berlin')).toISOString()).toBe('2026-07-01T10:00:00.000Z'); // CEST +2
  expect(new Date(zonedToUtc('2026-12-01T12:00', 'Europe/Berlin')).toISOString()).toBe('2026-12-01T11:00:00.000Z'); // CET +1
  expect(new Date(zonedToUtc('2026-11-26T09:30', 'America/New_York')).toISOString()).toBe('2026-11-26T14:30:00.000Z');
});

const friday: FreezeWindow = { name: 'friday-pm', timezone: 'Europe/Berlin', weekly: { days: ['fri'], from: '16:00', to: '24:00' } };
const weekend: FreezeWindow = { name: 'weekend', timezone: 'Europe/Berlin', weekly: { days: ['sat', 'sun'], from: '00:00', to: '24:00' } };

test('weekly window in a time zone', () => {
  // Friday 2026-11-27 15:59 Berlin (14:59Z) is outside, 16:00 Berlin (15:00Z) inside.
  expect(activeFreeze(at('2026-11-27T14:59:00Z'), [friday])).toBeNull();
  expect(activeFreeze(at('2026-11-27T15:00:00Z'), [friday])).toEqual({ window: 'friday-pm', untilMs: at('2026-11-27T23:00:00Z') });
  expect(activeFreeze(at('2026-11-26T15:00:00Z'), [friday])).toBeNull(); // Thursday
});

test('back-to-back windows chain into one freeze', () => {
  expect(activeFreeze(at('2026-11-27T20:00:00Z'), [friday, weekend])).toEqual({ window: 'friday-pm', untilMs: at('2026-11-29T23:00:00Z') });
});

test('one-off window', () => {
  const bf: FreezeWindow = { name: 'black-friday', timezone: 'America/New_York', from: '2026-11-27T00:00', to: '2026-11-30T00:00' };
  expect(activeFreeze(at('2026-11-27T04:59:00Z'), [bf])).toBeNull();
  expect(activeFreeze(at('2026-11-27T05:00:00Z'), [bf])).toEqual({ window: 'black-friday', untilMs: at('2026-11-30T05:00:00Z') });
  expect(activeFreeze(at('2026-11-30T05:00:00Z'), [bf])).toBeNull();
});
