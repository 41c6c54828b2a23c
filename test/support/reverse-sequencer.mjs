/**
 * Jest's default order, reversed (scripts/test.sh gives it to the Node 24 leg, which runs at the
 * same time as the machine's leg): the default runs the longest files first (by the last run's
 * times, else by size), so both legs would run the heaviest files (fault schedules, invariant,
 * bench smoke) at the same moment on the 2-core machine. Reversed, one leg's heaviest files meet
 * the other's light ones.
 */
import Sequencer from '@jest/test-sequencer';

export default class ReverseSequencer extends Sequencer {
  sort(tests) {
    return [...super.sort(tests)].reverse();
  }
}
