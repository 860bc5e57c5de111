/** Engine factory: the only place that knows which backends exist. */
import type { Config } from '../config/schema.js';
import { createPocketSphinxEngine } from './pocketsphinx.js';
import { createWhisperEngine } from './whisper.js';
import { createMoonshineEngine } from './moonshine.js';
import { EngineError, type Engine } from './types.js';

export * from './types.js';
export { checkPocketSphinxModel, createPocketSphinxEngine } from './pocketsphinx.js';
export { checkWhisperModel, createWhisperEngine, loadWhisperModel } from './whisper.js';
export { checkMoonshineModel, createMoonshineEngine, loadMoonshineModel } from './moonshine.js';

export async function createEngine(config: Readonly<Config>): Promise<Engine> {
  switch (config.engine.kind) {
    case 'pocketsphinx':
      return createPocketSphinxEngine(config.engine);
    case 'whisper':
      return createWhisperEngine(config.engine);
    case 'moonshine':
      return createMoonshineEngine(config.engine);
    case 'overhead': {
      // The overhead-measurement engine does no decoding; it exists so
      // bench/ and test/ can isolate the gateway's own cost.
      if (process.env.CAPTIONGATE_ALLOW_OVERHEAD_ENGINE !== '1') {
        throw new EngineError(
          'ENGINE_LOAD_FAILED',
          'engine.kind "overhead" does no decoding and is only for bench/ and test/ ' +
            '(set CAPTIONGATE_ALLOW_OVERHEAD_ENGINE=1 there).',
        );
      }
      const { createOverheadEngine } = await import('./overhead.js');
      const finalEverySeconds = Number(process.env.CAPTIONGATE_OVERHEAD_FINAL_SECONDS ?? 0) || 0;
      return createOverheadEngine({ windowMs: config.engine.windowMs, finalEverySeconds });
    }
  }
}
