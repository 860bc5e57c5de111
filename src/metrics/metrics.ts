/**
 * Prometheus metrics (prom-client), one registry per gateway so tests can run
 * several gateways in one process. Live values (pool, engine) are read at
 * scrape time through collect callbacks; counters are bumped on hot paths.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Registry } from 'prom-client';

import type { EngineStats } from '../engine/types.js';
import type { SlabPoolStats } from '../pool/slab-pool.js';
import { FastCounter, FastHistogram } from './fast.js';

export interface LiveSources {
  pool(): SlabPoolStats;
  engine(): EngineStats;
  sessions(): number;
  /** Sessions whose connection dropped, waiting for a resume. */
  parkedSessions(): number;
  batchesInFlight(): number;
  engineLagSeconds(): number;
  /** The caption store: reachable, records waiting to be written, records dropped. */
  store(): { readonly ok: boolean; readonly queuedWrites: number; readonly droppedWrites: number };
}

const LOOP_RESOLUTION_MS = 50;
const LATENCY_BUCKETS = [0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];

export class GatewayMetrics {
  readonly registry = new Registry();
  // Per frame, window or caption: plain numbers until scraped.
  readonly samplesReceived: FastCounter;
  readonly samplesDecoded: FastCounter;
  readonly samplesDropped: FastCounter;
  readonly partialRevisions: FastCounter;
  readonly committedWords: FastCounter;
  readonly lagWarnings: FastCounter;
  readonly firstPartialLatency: FastHistogram;
  readonly finalLatency: FastHistogram;
  readonly ingestToSubmit: FastHistogram;
  readonly batchSize: FastHistogram;
  // Rare events, by label.
  readonly errors: Counter<'code'>;
  readonly sessionsStarted: Counter;
  readonly sessionsEnded: Counter<'reason'>;
  readonly sessionsResumed: Counter;
  readonly sessionsRefused: Counter<'code'>;
  readonly internalErrors: Counter<'boundary'>;
  #loop: IntervalHistogram;
  #loopWindow = { p50: 0, p99: 0, max: 0 };

  constructor(live: LiveSources, options: { defaultMetrics?: boolean } = {}) {
    const r = this.registry;
    // prom-client's default metrics start their own event-loop monitor (a
    // timer every 10 ms); every wakeup costs CPU on these VMs, so we expose
    // the process figures ourselves and keep a single monitor.
    if (options.defaultMetrics !== false) {
      const cpu0 = process.cpuUsage();
      new Counter({
        name: 'captiongate_process_cpu_seconds_total',
        help: 'User and system CPU time of the process (all threads).',
        registers: [r],
        collect() {
          const c = process.cpuUsage(cpu0);
          this.reset();
          this.inc((c.user + c.system) / 1e6);
        },
      });
      new Gauge({
        name: 'captiongate_process_resident_memory_bytes',
        help: 'Resident set size.',
        registers: [r],
        collect() {
          this.set(process.memoryUsage.rss());
        },
      });
      new Gauge({
        name: 'captiongate_process_heap_used_bytes',
        help: 'V8 heap in use.',
        registers: [r],
        collect() {
          this.set(process.memoryUsage().heapUsed);
        },
      });
    }

    // Workers of one node (server.workers) are aggregated by the cluster
    // primary (prom-client's AggregatorRegistry): counts sum, and a delay
    // takes the worst worker ('max'), since a sum of delays means nothing.
    const gauge = (name: string, help: string, read: () => number, aggregator: 'sum' | 'max' | 'min' = 'sum') =>
      new Gauge({
        name,
        help,
        registers: [r],
        aggregator,
        collect() {
          this.set(read());
        },
      });
    gauge('captiongate_sessions_active', 'Sessions currently open (parked ones included).', () => live.sessions());
    gauge('captiongate_sessions_parked', 'Sessions whose connection dropped, waiting for a resume (no slab held).', () => live.parkedSessions());
    gauge('captiongate_slabs_in_use', 'Pool slabs held by sessions.', () => live.pool().inUse);
    gauge('captiongate_slabs_high_water', 'Most slabs ever in use at once.', () => live.pool().highWater);
    gauge('captiongate_slabs_total', 'Slabs in the pool (fixed at startup).', () => live.pool().slabs);
    gauge('captiongate_slab_refusals', 'Slab requests refused because the pool was empty.', () => live.pool().refusals);
    gauge('captiongate_pool_bytes', 'Bytes allocated for the pool at startup.', () => live.pool().totalBytes);
    gauge('captiongate_decoders_in_use', 'Engine decoders held by streams inside an utterance.', () => live.engine().decodersInUse);
    gauge('captiongate_decoders_total', 'Engine decoders in the pool.', () => live.engine().decoders);
    gauge('captiongate_streams_waiting_for_decoder', 'Streams parked for a free decoder.', () => live.engine().streamsWaiting);
    gauge('captiongate_engine_busy_seconds', 'Engine worker time spent decoding (cumulative).', () => live.engine().busyMs / 1000);
    gauge('captiongate_engine_model_bytes', 'Model memory the engine holds (Whisper: its weights; PocketSphinx: 0, not measured).', () => live.engine().modelBytes);
    gauge('captiongate_batches_in_flight', 'Engine batches submitted and not yet complete.', () => live.batchesInFlight());
    gauge('captiongate_engine_lag_seconds', 'How long the oldest undecoded audio of any session has waited, at the last sweep (admission control input).', () => live.engineLagSeconds(), 'max');
    // One store for every worker of the node: it is up only if every worker reaches it.
    gauge('captiongate_store_up', 'The caption store is reachable (0 while PostgreSQL is down: writes queue, stored files answer 503).', () => (live.store().ok ? 1 : 0), 'min');
    gauge('captiongate_store_queued_writes', 'Records (sessions, finals, ends) waiting to be written to the caption store.', () => live.store().queuedWrites);
    gauge('captiongate_store_dropped_writes', 'Records never written to the caption store since start (queue full at store.maxQueuedWrites, or a batch refused).', () => live.store().droppedWrites);
    // One window per scrape: the p50 gauge (collected first) closes the window
    // since the previous scrape; p99 and max read the same window.
    gauge('captiongate_event_loop_lag_p50_seconds', 'Event-loop delay p50 since the previous scrape.', () => {
      this.#rollLoopWindow();
      return this.#loopWindow.p50;
    }, 'max');
    gauge('captiongate_event_loop_lag_p99_seconds', 'Event-loop delay p99 since the previous scrape.', () => this.#loopWindow.p99, 'max');
    gauge('captiongate_event_loop_lag_max_seconds', 'Event-loop delay max since the previous scrape.', () => this.#loopWindow.max, 'max');

    const counter = <L extends string = never>(name: string, help: string, labelNames?: L[]) =>
      new Counter<L>({ name, help, registers: [r], ...(labelNames ? { labelNames } : {}) });
    const fast = (name: string, help: string) => new FastCounter(name, help, r);
    this.samplesReceived = fast('captiongate_samples_received_total', 'Audio samples (16 kHz) accepted into sessions.');
    this.samplesDecoded = fast('captiongate_samples_decoded_total', 'Audio samples (16 kHz) consumed by the engine.');
    this.samplesDropped = fast('captiongate_samples_dropped_total', 'Accepted audio samples (16 kHz) not decoded, reported to clients.');
    this.internalErrors = counter(
      'captiongate_internal_errors_total',
      'Exceptions caught at a fault boundary (each ended one session or connection with CAP_ERR_INTERNAL), by boundary.',
      ['boundary'],
    );
    this.errors = counter('captiongate_errors_total', 'Errors sent to clients, by code.', ['code']);
    this.sessionsStarted = counter('captiongate_sessions_started_total', 'Sessions started.');
    this.sessionsResumed = counter('captiongate_sessions_resumed_total', 'Sessions resumed on a new connection after a drop (or taken over).');
    this.sessionsEnded = counter('captiongate_sessions_ended_total', 'Sessions ended, by reason.', ['reason']);
    this.sessionsRefused = counter('captiongate_sessions_refused_total', 'Sessions refused, by code.', ['code']);
    this.partialRevisions = fast('captiongate_partial_revisions_total', 'Partial captions sent.');
    this.committedWords = fast('captiongate_committed_words_total', 'Words in final captions.');
    this.lagWarnings = fast('captiongate_lag_warnings_total', 'Lagging warnings sent.');

    const hist = (name: string, help: string, buckets: number[]) => new FastHistogram(name, help, r, buckets);
    this.firstPartialLatency = hist(
      'captiongate_first_partial_latency_seconds',
      'From the arrival of an utterance\'s first audio to its first partial with a word.',
      LATENCY_BUCKETS,
    );
    this.finalLatency = hist(
      'captiongate_final_latency_seconds',
      'From the arrival of the audio at the endpoint to the final being sent.',
      LATENCY_BUCKETS,
    );
    this.ingestToSubmit = hist(
      'captiongate_ingest_to_submit_seconds',
      'From a session having a window ready to the window being submitted to the engine.',
      [0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25],
    );
    this.batchSize = hist('captiongate_engine_batch_windows', 'Windows per engine call.', [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);

    this.#loop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.#loop.enable();
  }

  #rollLoopWindow(): void {
    const h = this.#loop;
    if (h.count === 0) return; // keep the last window rather than report nothing
    // The histogram records the time between the monitor's ticks, which is
    // the resolution when idle: the delay is what exceeds it.
    const lag = (ns: number) => Math.max(0, ns / 1e6 - LOOP_RESOLUTION_MS) / 1000;
    this.#loopWindow = { p50: lag(h.percentile(50)), p99: lag(h.percentile(99)), max: lag(h.max) };
    h.reset();
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  close(): void {
    this.#loop.disable();
  }
}
