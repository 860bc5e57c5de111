import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';

/**
 * Defaults from config/default.json, ignoring the caller's environment,
 * except the engine: the protocol and robustness tests run on PocketSphinx,
 * the lightest engine, so that they hold on a loaded 2-core machine. Tests
 * of the default engine (Moonshine) say so with `engine.kind`.
 */
export function testConfig(overrides: Record<string, unknown> = {}): Readonly<Config> {
  const engine = { kind: 'pocketsphinx', ...((overrides.engine as Record<string, unknown> | undefined) ?? {}) };
  return loadConfig({ ignoreEnv: true, overrides: { ...overrides, engine } });
}
