/**
 * Shutdown order from composition, as fastify's preClose/onClose hooks
 * give it: each part registers its own steps when it is created, and
 * shutdown runs them in reverse order of registration, so a part stops
 * before the parts it was built on.
 *
 *   drain: stop taking new work and finish what is in flight
 *          (the transport stops listening, then sessions and file jobs finish);
 *   close: release resources (connections, timers, engine threads).
 *
 * Every drain step runs before any close step. A step that throws is
 * logged and the rest still run.
 */
import type { Logger } from 'pino';

type Step = { readonly name: string; readonly run: () => void | Promise<void> };

export class Lifecycle {
  #drain: Step[] = [];
  #close: Step[] = [];
  #log: Logger;
  #done: Promise<void> | null = null;

  constructor(log: Logger) {
    this.#log = log;
  }

  onDrain(name: string, run: () => void | Promise<void>): void {
    this.#drain.push({ name, run });
  }

  onClose(name: string, run: () => void | Promise<void>): void {
    this.#close.push({ name, run });
  }

  /** Runs every drain step, then every close step, each phase in reverse registration order. Idempotent. */
  shutdown(): Promise<void> {
    this.#done ??= (async () => {
      for (const phase of [this.#drain, this.#close]) {
        for (const step of [...phase].reverse()) {
          try {
            await step.run();
          } catch (err) {
            this.#log.error({ err, step: step.name }, `shutdown step ${step.name} failed`);
          }
        }
      }
    })();
    return this.#done;
  }
}
