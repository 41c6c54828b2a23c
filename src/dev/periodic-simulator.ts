/** Dev/test only: the tick loop shared by the traffic simulators (one tick at a time, errors skipped). */
export abstract class PeriodicSimulator {
  private timer?: NodeJS.Timeout;
  private running = false;
  ticks = 0;

  /** One round of simulated traffic. A failure (setup still in progress) skips the round. */
  protected abstract once(): Promise<void>;

  start(intervalMs = 400): this {
    this.timer = setInterval(() => void this.tick(), intervalMs);
    return this;
  }

  async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await this.once();
      this.ticks++;
    } catch {
      // a function/service not created yet is skipped until the next tick
    } finally {
      this.running = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
