/** Types for `sns-validator` 0.3.5 (AWS's reference SNS message validator, no types shipped); used by tests as a cross-check. */
declare module 'sns-validator' {
  class MessageValidator {
    constructor(hostPattern?: RegExp, encoding?: string);
    validate(message: string | Record<string, unknown>, cb: (err: Error | null, message?: Record<string, unknown>) => void): void;
  }
  export = MessageValidator;
}
