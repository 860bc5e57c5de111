/**
 * HTTP requests whose handler is running. A transport's close() waits for
 * them, up to a bound, before it drops the connections: a request that was
 * being answered when the gateway stopped (a caption file read from the
 * store, a file job answered 503) gets its answer rather than a reset.
 */
export class InFlight {
  #count = 0;
  #idle: (() => void)[] = [];

  /** Counts one request in; the function returned counts it out (once, however often it is called). */
  begin(): () => void {
    this.#count++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.#count === 0) for (const f of this.#idle.splice(0)) f();
    };
  }

  /** Resolves when none is running, or after `ms`. */
  async settled(ms: number): Promise<void> {
    if (this.#count === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise<void>((r) => this.#idle.push(r)), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }
}

/** How long close() waits for running HTTP handlers. */
export const HTTP_SETTLE_MS = 5_000;
