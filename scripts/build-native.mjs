#!/usr/bin/env node
// Builds native/ with node-gyp, offline. node-gyp downloads Node's headers
// unless told where they are; a fresh machine may have no npmrc saying so,
// so we derive nodedir from the running node binary (/usr/bin/node -> /usr)
// and pass it explicitly.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(root, 'native');
const debug = process.argv.includes('--debug');
const asan = process.argv.includes('--asan');

function findNodeDir() {
  const candidates = [
    process.env.npm_config_nodedir,
    path.resolve(path.dirname(process.execPath), '..'),
  ].filter(Boolean);
  for (const dir of candidates) {
    if (existsSync(path.join(dir, 'include', 'node', 'node.h'))) return dir;
  }
  return null;
}

function findNodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) {
    return process.env.npm_config_node_gyp;
  }
  const require = createRequire(import.meta.url);
  for (const spec of ['node-gyp/bin/node-gyp.js']) {
    try {
      return require.resolve(spec);
    } catch {}
  }
  // npm ships node-gyp next to itself.
  const npmDir = path.resolve(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
  const bundled = path.join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  return existsSync(bundled) ? bundled : null;
}

const nodedir = findNodeDir();
if (!nodedir) {
  console.error(
    `captiongate: Node's headers were not found next to ${process.execPath} (expected <prefix>/include/node/node.h).\n` +
      'Install Node with its headers, or set npm_config_nodedir to a directory that has include/node.',
  );
  process.exit(1);
}
const gyp = findNodeGyp();
if (!gyp) {
  console.error('captiongate: node-gyp was not found (it ships with npm). Reinstall npm or `npm i -g node-gyp`.');
  process.exit(1);
}

const args = [gyp, 'rebuild', `--nodedir=${nodedir}`, `--jobs=max`];
if (debug || asan) args.push('--debug');
const env = { ...process.env };
if (asan) {
  env.CXXFLAGS = `${env.CXXFLAGS ?? ''} -fsanitize=address -fno-omit-frame-pointer -g`;
  env.LDFLAGS = `${env.LDFLAGS ?? ''} -fsanitize=address`;
}
console.log(`captiongate: building native addon (nodedir=${nodedir}${asan ? ', ASan' : ''})`);
const r = spawnSync(process.execPath, args, { cwd: nativeDir, stdio: 'inherit', env });
process.exit(r.status ?? 1);
