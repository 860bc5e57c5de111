import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

/** Defaults from config/default.json, ignoring the caller's environment. */
export function testConfig(overrides: Record<string, unknown> = {}): Readonly<Config> {
  return loadConfig({ ignoreEnv: true, overrides });
}
