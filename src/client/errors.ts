/**
 * The client's refusal: the operation cannot be done as asked (no such rollout, already closed, a
 * second rollout of a service, a schedule that exists). Its message says what to do instead. In a
 * module of its own so that src/schedules.ts can throw it while src/client.ts re-exports the
 * schedule functions (no import cycle).
 */
export class RolloutRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutRefusedError';
  }
}
