/** Public API: run a gateway in-process, or load and validate config. */
export { createGateway, type Gateway, type GatewayOptions } from './gateway/gateway.js';
export { loadConfig, validateConfig, ConfigError } from './config/load.js';
export type { Config } from './config/schema.js';
export { createEngine } from './engine/index.js';
export type * from './engine/types.js';
export { ERRORS, CloseCode, END_REASONS, type ErrorCode, type EndReason } from './errors.js';
export type * from './protocol/messages.js';
