#!/usr/bin/env node
// Include directory of the ONNX Runtime C/C++ API headers, for binding.gyp.
// scripts/fetch-moonshine-model.mjs (which setup runs before npm ci) fetches
// them from Debian's libonnxruntime-dev, verifies them and extracts them into
// build/onnxruntime/include; they are never committed. Missing headers fail
// the build loudly, with the command that fixes it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, 'build', 'onnxruntime', 'include');
if (!existsSync(path.join(dir, 'onnxruntime_cxx_api.h'))) {
  process.stderr.write(
    `captiongate: the ONNX Runtime headers are not in ${dir}.\n` +
      'Fetch and verify them with: node scripts/fetch-moonshine-model.mjs --headers\n' +
      '(scripts/setup.sh runs it before building the addon)\n',
  );
  process.exit(1);
}
process.stdout.write(dir);
