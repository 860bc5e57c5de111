/** Child process for bench/engine: load N decoders, print RSS and load time as JSON. */
import { loadConfig } from '../src/config/load.js';
import { createPocketSphinxEngine } from '../src/engine/pocketsphinx.js';

const n = Number(process.argv[2] ?? 1);
const c = loadConfig({ ignoreEnv: true }).engine;
const t0 = performance.now();
const engine = await createPocketSphinxEngine({ ...c, decoders: n, threads: 1 });
const loadMs = performance.now() - t0;
// Touch the decoders once so lazily mapped model pages count.
const id = engine.openStream();
await engine.submit([{ stream: id, start: 0, pcm: new Int16Array(16000), flush: true }]);
engine.closeStream(id);
const rssMb = process.memoryUsage().rss / 2 ** 20;
await engine.shutdown();
console.log(JSON.stringify({ decoders: n, rssMb, loadMs }));
