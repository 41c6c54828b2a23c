/**
 * Client calls in flight on one Temporal `Connection`, seen by an outermost gRPC interceptor (so a
 * call counts until its last retry has settled, backoff timers included).
 */
import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';

interface InFlight {
  method: string;
  sinceMs: number;
  stack: string;
}

export class CallTracker {
  private readonly inFlight = new Map<number, InFlight>();
  private seq = 0;

  /** The interceptors for `Connection.connect`: this tracker around the SDK's default retries. */
  interceptors(): Interceptor[] {
    return [this.interceptor, makeGrpcRetryInterceptor(defaultGrpcRetryOptions())];
  }

  private readonly interceptor: Interceptor = (options, nextCall) => {
    const id = ++this.seq;
    const stack = (new Error().stack ?? '').split('\n').slice(2, 14).join('\n');
    return new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        this.inFlight.set(id, { method: options.method_definition.path, sinceMs: Date.now(), stack });
        next(metadata, {
          onReceiveStatus: (status, nextStatus) => {
            this.inFlight.delete(id);
            nextStatus(status);
          },
        });
      },
    });
  };

  /** Wait until no call is in flight or `maxMs` passed; what is still in flight then. */
  async settled(maxMs: number): Promise<string[]> {
    const deadline = Date.now() + maxMs;
    while (this.inFlight.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    return this.describe();
  }

  /** Each call in flight: its method, for how long, and where it was made. */
  describe(): string[] {
    const now = Date.now();
    return [...this.inFlight.values()].map((c) => `${c.method} for ${now - c.sinceMs} ms\n${c.stack}`);
  }
}
