import { pino, type Logger } from 'pino';

import type { Config } from './config/schema.js';

/** JSON logs (pino); pretty when log.pretty or CAPTIONGATE_LOG_PRETTY=1. */
export function createLogger(cfg: Readonly<Config['log']>, destination?: NodeJS.WritableStream): Logger {
  const pretty = cfg.pretty || process.env.CAPTIONGATE_LOG_PRETTY === '1';
  if (destination) return pino({ level: cfg.level, base: { service: 'captiongate' } }, destination as pino.DestinationStream);
  if (pretty) {
    return pino({
      level: cfg.level,
      base: { service: 'captiongate' },
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,service' } },
    });
  }
  return pino({ level: cfg.level, base: { service: 'captiongate' } });
}
