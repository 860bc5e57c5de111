#!/usr/bin/env node
// Fetches, verifies and caches what the Moonshine engine (engine.kind
// "moonshine") needs besides npm packages. Setup runs this; the gateway never
// downloads anything.
//
//   1. The weights (MIT, Moonshine AI), from two PyPI wheels fetched with
//      `pip download --no-deps` (nothing is installed into any Python):
//        moonshine-voice 0.1.0 carries tiny-en  → models/moonshine-tiny/
//        moonshine-cpp   0.1.4 carries base-en  → models/moonshine-base/
//      Each model folder gets the wheel's LICENSE and a SOURCE.json.
//   2. The ONNX Runtime C/C++ headers the addon compiles against, from
//      Debian's libonnxruntime-dev 1.21.0+dfsg-1 package (the C API is
//      versioned: the addon asks the 1.22 library for API 21). Fetched from
//      the Debian mirror apt is configured with, extracted with dpkg-deb into
//      build/onnxruntime/ (git-ignored): third-party headers are never
//      committed.
//   3. The ONNX Runtime library itself comes from npm (onnxruntime-node
//      1.22.0, pinned in package.json); this only verifies its SHA-256.
//
// Every wheel, package and file is pinned by SHA-256; a mismatch is refused
// with a message that names the file and both hashes.
//
//   node scripts/fetch-moonshine-model.mjs [--dir MODELS_DIR] [--check] [--headers]
//
// --headers  only the ONNX Runtime headers (setup runs this before npm ci,
//            whose install script builds the addon).
// --check    verifies what is installed and exits 1 if anything is missing or wrong.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const dirArg = argv.indexOf('--dir');
const modelsDir = dirArg >= 0 ? path.resolve(argv[dirArg + 1]) : path.join(root, 'models');
const checkOnly = argv.includes('--check');
const headersOnly = argv.includes('--headers');
const python = process.env.PYTHON ?? 'python3';

const MODELS = {
  tiny: {
    dir: 'moonshine-tiny',
    title: 'Moonshine tiny (tiny-en)',
    wheel: {
      name: 'moonshine-voice',
      version: '0.1.0',
      file: 'moonshine_voice-0.1.0-py3-none-manylinux_2_34_x86_64.whl',
      sha256: '0f833deb43bad5dcfb4cfd3257b6df83ef9abd3f27be3199622fe41932e8d916',
    },
    files: {
      'encoder_model.ort': { member: 'moonshine_voice/assets/tiny-en/encoder_model.ort', sha256: '94e90a4654fc45cdfedb77c4c08e1739f48862998e58fada384b25118134f221' },
      'decoder_model_merged.ort': { member: 'moonshine_voice/assets/tiny-en/decoder_model_merged.ort', sha256: 'cf524c4862d36e9e5ab032eddc73637efd822d70e868ac575cf1a46e1e4708a0' },
      'tokenizer.bin': { member: 'moonshine_voice/assets/tiny-en/tokenizer.bin', sha256: '6884b35fd6377d4c4d32336a0bc152f36b64d1e45b6503683cdc238250a8472d' },
      LICENSE: { member: 'moonshine_voice-0.1.0.dist-info/licenses/LICENSE', sha256: '5da20e09cad096fb153b6c80b26c270027f9601285c498e571fc74fee5ab7157' },
    },
  },
  base: {
    dir: 'moonshine-base',
    title: 'Moonshine base (base-en)',
    wheel: {
      name: 'moonshine-cpp',
      version: '0.1.4',
      file: 'moonshine_cpp-0.1.4-py3-none-manylinux2014_x86_64.whl',
      sha256: 'f7afc662bdd3ef98815ee3b940438b456e77d5a77cea5396ed9c572785412ebd',
    },
    files: {
      'encoder_model.ort': { member: 'moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/models/base-en/encoder_model.ort', sha256: '9d1a19e044cbf89a207723d1adb667de89a5671a1e3e611b8ebe721b2c31219c' },
      'decoder_model_merged.ort': { member: 'moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/models/base-en/decoder_model_merged.ort', sha256: '370e0c1f161d68dc1c2264c1a82024fb123380da3b73f47f05531d1e8d3308c3' },
      'tokenizer.bin': { member: 'moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/models/base-en/tokenizer.bin', sha256: '04670d78994d030185c3dd843c60591788fed0a56cc6750747bd326825f13ca9' },
      LICENSE: { member: 'moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/LICENSE', sha256: '5184ec974ddac0a49e478471bd789fd9e9af7254030e1b7f2af74c2ab8a4161e' },
    },
  },
};

// Debian trixie's libonnxruntime-dev: headers only are used (usr/include/onnxruntime).
const HEADERS_DEB = {
  file: 'libonnxruntime-dev_1.21.0+dfsg-1_amd64.deb',
  pool: 'pool/main/o/onnxruntime',
  sha256: '14f7d959d5deacbcf1504830d4189f91fc67382b399ed9ae9d3aa9c4050ced08',
  bytes: 85340,
};
const HEADERS_DIR = path.join(root, 'build', 'onnxruntime');
const HEADER_FILES = {
  'include/onnxruntime_c_api.h': '7783e9664bdb0b1b36145b5c8587dd1bc9a399aa000edf2e3dd03003cafc6882',
  'include/onnxruntime_cxx_api.h': 'b3b27d6a6fced0725e3f188379cca008b1d7a456997684756374d4b388f2cf05',
  'include/onnxruntime_cxx_inline.h': '7f448e994c732eacd9e49900365fefa8f1ac998a6d6eb78e5f4aab1b8d9d8900',
  'include/onnxruntime_float16.h': '6c4db3d1954b266c4febe413351af86cac922e3448538e7e452e51d646e56a4a',
  'include/onnxruntime_run_options_config_keys.h': '730910e9e78af536d0a4a5a72d408ab793bbe232054a5a4596c8200e45f3c99c',
  'include/onnxruntime_session_options_config_keys.h': '1fbd110d53e1babe6f00c72b88b48faf2ef86c3b1fea8e0989df8632af5a9e0f',
};

// npm onnxruntime-node 1.22.0 (package.json pins it): its bundled linux-x64 library.
const RUNTIME = {
  pkg: 'onnxruntime-node',
  version: '1.22.0',
  lib: 'bin/napi-v6/linux/x64/libonnxruntime.so.1',
  sha256: '08cf3bf4218f0e816c2a534e960d85221274cb319569bdf1136b29da7065b015',
};

async function sha256(file) {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk);
  return h.digest('hex');
}

async function verifyFiles(dir, files) {
  const problems = [];
  for (const [name, want] of Object.entries(files)) {
    const f = path.join(dir, name);
    if (!existsSync(f)) {
      problems.push(`${name} is missing`);
      continue;
    }
    const got = await sha256(f);
    const expected = typeof want === 'string' ? want : want.sha256;
    if (got !== expected) problems.push(`${name}: SHA-256 ${got}, expected ${expected}`);
  }
  return problems;
}

const rel = (p) => path.relative(process.cwd(), p) || p;
let failed = false;
function problem(msg) {
  console.error(`captiongate: ${msg}`);
  failed = true;
}

// ------------------------------------------------------------------ headers

/** Debian archive URIs apt is configured with (deb822 .sources and one-line .list). */
function debianMirrors() {
  if (process.env.CAPTIONGATE_DEBIAN_MIRROR) return [process.env.CAPTIONGATE_DEBIAN_MIRROR];
  const uris = [];
  const files = ['/etc/apt/sources.list'];
  try {
    for (const f of readdirSync('/etc/apt/sources.list.d')) if (/\.(list|sources)$/.test(f)) files.push(path.join('/etc/apt/sources.list.d', f));
  } catch {}
  for (const f of files) {
    let text;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const l = line.trim();
      let m = /^URIs:\s*(.+)$/i.exec(l);
      if (m) uris.push(...m[1].split(/\s+/));
      m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/.exec(l);
      if (m) uris.push(m[1]);
    }
  }
  // The main archive (…/debian), not the security one: the package pool lives there.
  return [...new Set(uris.filter((u) => /^https?:\/\//.test(u) && /\/debian\/?$/.test(u)).map((u) => u.replace(/\/$/, '')))];
}

async function installHeaders() {
  const problems = await verifyFiles(HEADERS_DIR, HEADER_FILES);
  if (problems.length === 0) {
    console.log(`ONNX Runtime headers: verified in ${rel(HEADERS_DIR)} (cached)`);
    return;
  }
  if (checkOnly) {
    problem(`ONNX Runtime headers in ${HEADERS_DIR} are not usable: ${problems.join('; ')}. Run: node scripts/fetch-moonshine-model.mjs --headers`);
    return;
  }
  const mirrors = debianMirrors();
  if (!mirrors.length) {
    problem('no Debian archive is configured for apt (/etc/apt/sources.list*), so the ONNX Runtime headers package cannot be fetched. Set CAPTIONGATE_DEBIAN_MIRROR to a Debian mirror URL.');
    return;
  }
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'cg-ortdev-'));
  try {
    const deb = path.join(tmp, HEADERS_DEB.file);
    let fetched = false;
    const errors = [];
    for (const m of mirrors) {
      const url = `${m}/${HEADERS_DEB.pool}/${encodeURIComponent(HEADERS_DEB.file)}`;
      try {
        const r = await fetch(url);
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        writeFileSync(deb, Buffer.from(await r.arrayBuffer()));
        fetched = true;
        console.log(`ONNX Runtime headers: fetched ${HEADERS_DEB.file} from the Debian archive apt uses`);
        break;
      } catch (err) {
        errors.push(`${url}: ${err.message}`);
      }
    }
    if (!fetched) {
      problem(`could not fetch ${HEADERS_DEB.file} (${errors.join('; ')})`);
      return;
    }
    const got = await sha256(deb);
    if (got !== HEADERS_DEB.sha256) {
      problem(`checksum mismatch for ${HEADERS_DEB.file}: SHA-256 ${got}, expected ${HEADERS_DEB.sha256}. Refusing to install it.`);
      return;
    }
    const x = path.join(tmp, 'x');
    execFileSync('dpkg-deb', ['-x', deb, x]);
    const stage = path.join(tmp, 'stage');
    mkdirSync(stage);
    renameSync(path.join(x, 'usr', 'include', 'onnxruntime'), path.join(stage, 'include'));
    copyFileSync(path.join(x, 'usr', 'share', 'doc', 'libonnxruntime-dev', 'copyright'), path.join(stage, 'copyright'));
    const after = await verifyFiles(stage, HEADER_FILES);
    if (after.length) {
      problem(`checksum mismatch after extraction: ${after.join('; ')}. Refusing to install it.`);
      return;
    }
    writeFileSync(path.join(stage, 'SOURCE.json'), JSON.stringify({ package: 'libonnxruntime-dev', version: '1.21.0+dfsg-1', deb: HEADERS_DEB, files: HEADER_FILES, license: 'MIT (see copyright)' }, null, 2) + '\n');
    mkdirSync(path.dirname(HEADERS_DIR), { recursive: true });
    rmSync(HEADERS_DIR, { recursive: true, force: true });
    renameSync(stage, HEADERS_DIR);
    console.log(`ONNX Runtime headers: installed and verified in ${rel(HEADERS_DIR)}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ runtime library

async function checkRuntime() {
  const lib = path.join(root, 'node_modules', RUNTIME.pkg, RUNTIME.lib);
  if (!existsSync(lib)) {
    problem(`the ONNX Runtime library ${rel(lib)} is missing. Install the npm dependencies: npm ci (onnxruntime-node ${RUNTIME.version}).`);
    return;
  }
  const got = await sha256(lib);
  if (got !== RUNTIME.sha256) {
    problem(`checksum mismatch for ${rel(lib)}: SHA-256 ${got}, expected ${RUNTIME.sha256} (onnxruntime-node ${RUNTIME.version}). Reinstall it with npm ci.`);
    return;
  }
  console.log(`ONNX Runtime ${RUNTIME.version}: ${rel(lib)} verified`);
}

// ------------------------------------------------------------------ models

async function installModels() {
  const todo = [];
  for (const m of Object.values(MODELS)) {
    const dir = path.join(modelsDir, m.dir);
    const problems = existsSync(dir) ? await verifyFiles(dir, m.files) : ['not installed'];
    if (problems.length === 0) {
      console.log(`${m.title}: verified in ${rel(dir)} (cached)`);
      continue;
    }
    if (checkOnly) {
      problem(`${m.title} at ${dir} is not usable: ${problems.join('; ')}. Run: node scripts/fetch-moonshine-model.mjs`);
      continue;
    }
    todo.push(m);
  }
  if (!todo.length) return;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'cg-moonshine-'));
  try {
    console.log(`Moonshine: downloading ${todo.map((m) => `${m.wheel.name}==${m.wheel.version}`).join(', ')} from PyPI (pip download --no-deps, about ${55 * todo.length} MB)…`);
    try {
      execFileSync(python, ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--no-cache-dir', '--disable-pip-version-check', '-q', '-d', tmp,
        ...todo.map((m) => `${m.wheel.name}==${m.wheel.version}`)], { stdio: ['ignore', 'inherit', 'inherit'] });
    } catch (err) {
      problem(`pip download failed (${err.message}). The Moonshine weights come from PyPI; check that PyPI is reachable and that ${python} has pip.`);
      return;
    }
    for (const m of todo) {
      const whl = path.join(tmp, m.wheel.file);
      if (!existsSync(whl)) {
        problem(`pip did not produce ${m.wheel.file}`);
        continue;
      }
      const got = await sha256(whl);
      if (got !== m.wheel.sha256) {
        problem(`checksum mismatch for ${m.wheel.file}: SHA-256 ${got}, expected ${m.wheel.sha256}. Refusing to install it.`);
        continue;
      }
      const stage = path.join(tmp, m.dir);
      mkdirSync(stage);
      for (const [name, f] of Object.entries(m.files)) {
        execFileSync(python, ['-c', 'import sys,zipfile,shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst: shutil.copyfileobj(src, dst)',
          whl, f.member, path.join(stage, name)]);
      }
      const after = await verifyFiles(stage, m.files);
      if (after.length) {
        problem(`checksum mismatch after extraction from ${m.wheel.file}: ${after.join('; ')}. Refusing to install it.`);
        continue;
      }
      writeFileSync(path.join(stage, 'SOURCE.json'), JSON.stringify({
        model: `${m.title}, Moonshine AI (Useful Sensors), MIT license: see LICENSE`,
        wheel: m.wheel,
        files: Object.fromEntries(Object.entries(m.files).map(([k, v]) => [k, v.sha256])),
      }, null, 2) + '\n');
      const target = path.join(modelsDir, m.dir);
      mkdirSync(modelsDir, { recursive: true });
      rmSync(target, { recursive: true, force: true });
      renameSync(stage, target);
      console.log(`${m.title}: installed and verified in ${rel(target)}`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await installHeaders();
if (!headersOnly) {
  await installModels();
  await checkRuntime();
}
process.exit(failed ? 1 : 0);
