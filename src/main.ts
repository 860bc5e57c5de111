/**
 * `npm start`: load config, start the gateway, shut down gracefully on
 * SIGTERM/SIGINT (a second signal exits at once).
 */
import { fileURLToPath } from 'node:url';

import { ConfigError, loadConfig } from './config/load.js';
import { createGateway } from './gateway/gateway.js';
import { createLogger } from './log.js';

export async function runServer(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`captiongate: refusing to start.\n${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const log = createLogger(config.log);
  let gateway;
  try {
    gateway = await createGateway({ config, logger: log });
    await gateway.listen();
  } catch (err) {
    log.fatal({ err }, `startup failed: ${(err as Error).message}`);
    await new Promise((r) => setTimeout(r, 100));
    process.exit(1);
  }
  log.info(`web demo: http://localhost:${gateway.port}/   captions API: ws://localhost:${gateway.port}/v1/listen`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'signal received');
    gateway.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runServer().catch((err: unknown) => {
    process.stderr.write(`captiongate: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
