/**
 * `npm start`: load config, start the gateway, shut down gracefully on
 * SIGTERM/SIGINT (a second signal exits at once).
 *
 * With server.workers > 1 this process becomes the cluster primary
 * (src/cluster/primary.ts): it forks the workers, which run this same
 * entry and start one gateway each, with their share of the node's pool.
 */
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';

import { runPrimary } from './cluster/primary.js';
import { workerConfig } from './cluster/share.js';
import { WorkerLink, workerIndex } from './cluster/worker.js';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { createGateway } from './gateway/gateway.js';
import { createLogger } from './log.js';

export async function runServer(): Promise<void> {
  let config: Readonly<Config>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`captiongate: refusing to start.\n${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const index = workerIndex();
  if (config.server.workers > 1 && cluster.isPrimary) {
    const code = await runPrimary(config, createLogger(config.log).child({ role: 'primary' }));
    process.exit(code);
  }
  const link = index === null ? null : new WorkerLink(index);
  if (link) config = workerConfig(config, link.index);
  const log = link ? createLogger(config.log).child({ worker: link.index, pid: process.pid }) : createLogger(config.log);
  let gateway;
  try {
    gateway = await createGateway({
      config,
      logger: log,
      ...(link ? { cluster: { index: link.index, workers: config.server.workers, nodeMetrics: (worker?: number) => link.nodeMetrics(worker) } } : {}),
    });
    await gateway.listen();
  } catch (err) {
    log.fatal({ err }, `startup failed: ${(err as Error).message}`);
    await new Promise((r) => setTimeout(r, 100));
    process.exit(1);
  }
  if (link) {
    const g = gateway;
    link.serve(g.metrics.registry, () => g.manager.size);
    link.ready({ port: g.port, slabs: g.shapes.slabs, poolBytes: g.shapes.poolBytes });
  } else {
    log.info(`web demo: http://localhost:${gateway.port}/   captions API: ws://localhost:${gateway.port}/v1/listen`);
  }
  let stopping = false;
  let signals = 0;
  // A worker may get the primary's stop and the same signal itself (systemd signals the
  // whole control group, Ctrl-C the whole process group), in either order: that is one
  // stop. Only a second signal exits at once.
  const stop = (signal: string) => {
    if (signal !== 'primary' && ++signals >= 2) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    if (stopping) return;
    stopping = true;
    log.info({ signal }, signal === 'primary' ? 'the cluster primary stops the node' : 'signal received');
    gateway.shutdown().then(
      () => {
        link?.close();
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  link?.onStop(() => stop('primary'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runServer().catch((err: unknown) => {
    process.stderr.write(`captiongate: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
