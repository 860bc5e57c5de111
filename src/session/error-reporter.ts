/**
 * Errors sent to one connection, and its error budget: a session, a
 * connection before its session starts, and a meeting viewer all count
 * their errors here, against limits.maxErrorsPerSession, and each sent
 * error is counted in /metrics by code.
 */
import { ERRORS, type ErrorCode } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import type { ErrorMessage, Unsequenced } from '../protocol/messages.js';
import type { Outbox } from './outbox.js';

export interface ErrorOptions {
  /** Not counted against the budget (server-side ends, refusals). */
  readonly force?: boolean;
  readonly retryAfterMs?: number | undefined;
}

export class ErrorReporter {
  #outbox: Outbox;
  #metrics: GatewayMetrics;
  #budget: number;
  #spent = 0;

  constructor(outbox: Outbox, metrics: GatewayMetrics, budget: number) {
    this.#outbox = outbox;
    this.#metrics = metrics;
    this.#budget = budget;
  }

  /**
   * Counts an error and builds its message. `exhausted` is true when a
   * non-fatal error has just used up the budget: the caller then ends the
   * connection as a protocol violation.
   */
  report(code: ErrorCode, message: string, opts: ErrorOptions = {}): { msg: Unsequenced<ErrorMessage>; exhausted: boolean } {
    const { fatal } = ERRORS[code];
    this.#metrics.errors.inc({ code });
    const msg: Unsequenced<ErrorMessage> = { type: 'error', code, message, fatal };
    if (opts.retryAfterMs !== undefined) msg.retryAfterMs = opts.retryAfterMs;
    return { msg, exhausted: !opts.force && !fatal && ++this.#spent > this.#budget };
  }

  /** report(), sent on the connection itself (before a session exists, and for viewers). */
  send(code: ErrorCode, message: string, opts: ErrorOptions = {}): boolean {
    const { msg, exhausted } = this.report(code, message, opts);
    this.#outbox.send(msg);
    return exhausted;
  }

  /** The message that goes with a protocol-violation end. */
  get exhaustedMessage(): string {
    return `more than ${this.#budget} errors (limits.maxErrorsPerSession)`;
  }
}
