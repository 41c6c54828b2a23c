/**
 * Freeze windows: time ranges (weekly or one-off, in a time zone) in which no traffic step advances.
 * Pure functions; the workflow calls them through a local activity so that a tz-data update on a
 * worker can never change a recorded decision on replay.
 */
import type { FreezeWindow } from './schema';

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;

interface LocalParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  weekday: string;
}

function localParts(utcMs: number, timeZone: string): LocalParts {
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    weekday: 'short',
  });
  const p: Record<string, string> = {};
  for (const part of fmt.formatToParts(new Date(utcMs))) p[part.type] = part.value;
  return {
    year: +p.year,
    month: +p.month,
    day: +p.day,
    hour: +p.hour,
    minute: +p.minute,
    second: +p.second,
    weekday: p.weekday.toLowerCase().slice(0, 3),
  };
}

/** Offset of `timeZone` from UTC at `utcMs`, in ms (positive east of Greenwich). */
function offsetMs(utcMs: number, timeZone: string): number {
  const l = localParts(utcMs, timeZone);
  const asUtc = Date.UTC(l.year, l.month - 1, l.day, l.hour, l.minute, l.second);
  return asUtc - Math.floor(utcMs / 1000) * 1000;
}

/** The UTC instant of a wall-clock time in a zone (`2026-11-27T09:00`). */
export function zonedToUtc(local: string, timeZone: string): number {
  const [d, t] = local.split('T');
  const [y, mo, da] = d.split('-').map(Number);
  const [h, mi, s] = (t + ':0').split(':').map(Number);
  const naive = Date.UTC(y, mo - 1, da, h, mi, s || 0);
  let guess = naive - offsetMs(naive, timeZone);
  guess = naive - offsetMs(guess, timeZone); // second pass settles DST edges
  return guess;
}

function minutesOf(clock: string): number {
  const [h, m] = clock.split(':').map(Number);
  return h * 60 + m;
}

export interface FreezeState {
  window: string;
  /** UTC ms at which the window ends. */
  untilMs: number;
}

/** The freeze window that contains `nowMs` (the one ending last, if several), or null. */
export function activeFreeze(nowMs: number, windows: FreezeWindow[]): FreezeState | null {
  let found: FreezeState | null = null;
  for (const w of windows) {
    let until: number | null = null;
    if (w.weekly) {
      const l = localParts(nowMs, w.timezone);
      const minute = l.hour * 60 + l.minute;
      const from = minutesOf(w.weekly.from);
      const to = minutesOf(w.weekly.to);
      if ((w.weekly.days as string[]).includes(l.weekday) && minute >= from && minute < to) {
        const endLocal = `${l.year}-${String(l.month).padStart(2, '0')}-${String(l.day).padStart(2, '0')}T00:00`;
        until = zonedToUtc(endLocal, w.timezone) + to * 60_000;
      }
    } else if (w.from && w.to) {
      const from = zonedToUtc(w.from, w.timezone);
      const to = zonedToUtc(w.to, w.timezone);
      if (nowMs >= from && nowMs < to) until = to;
    }
    if (until !== null && (!found || until > found.untilMs)) found = { window: w.name, untilMs: until };
  }
  // Back-to-back windows (e.g. fri 18:00-24:00 then sat all day) chain into one freeze.
  if (found) {
    const next = activeFreeze(found.untilMs, windows);
    if (next && next.untilMs > found.untilMs) return { window: found.window, untilMs: next.untilMs };
  }
  return found;
}

export { DAYS };
