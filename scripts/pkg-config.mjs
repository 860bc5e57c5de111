#!/usr/bin/env node
// pkg-config for binding.gyp, with one fix: Debian's pocketsphinx.pc lists
// -I/usr/include/sphinxbase, which does not exist (the headers live under
// the multiarch path). Keep only include directories that exist and add the
// real sphinxbase one, so a missing -dev package fails loudly, not oddly.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const args = process.argv.slice(2);
const mode = args[0];
const pkgs = args.slice(1);
const APT = { pocketsphinx: 'libpocketsphinx-dev', speexdsp: 'libspeexdsp-dev', openblas: 'libopenblas-dev' };

let out;
try {
  out = execFileSync('pkg-config', [mode === '--cflags-only-I' ? '--cflags-only-I' : mode, ...pkgs], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
} catch (err) {
  const need = pkgs.map((p) => APT[p] ?? p).join(' ');
  process.stderr.write(
    `captiongate: pkg-config could not find ${pkgs.join(', ')}.\n` +
      `Install the native build dependencies: apt-get install -y pkg-config ${need}\n` +
      `(or run scripts/setup.sh, which does it for you)\n`,
  );
  process.exit(1);
}

let tokens = out.trim().split(/\s+/).filter(Boolean);
if (mode === '--cflags-only-I') {
  const dirs = tokens.map((t) => t.replace(/^-I/, ''));
  for (const extra of ['/usr/include/x86_64-linux-gnu/sphinxbase', '/usr/include/aarch64-linux-gnu/sphinxbase']) {
    if (!dirs.includes(extra)) dirs.push(extra);
  }
  tokens = dirs.filter((d) => existsSync(d));
  // Headers include <sphinxbase/...>: the parent of the sphinxbase dir too.
  for (const d of [...tokens]) {
    if (d.endsWith('/sphinxbase')) {
      const parent = d.slice(0, -'/sphinxbase'.length);
      if (!tokens.includes(parent)) tokens.push(parent);
    }
  }
}
process.stdout.write(tokens.join(' '));
