#!/usr/bin/env bash
# Builds and runs the native engine's C++ tests (GoogleTest, no Node).
#
#   native/test/run.sh            plain build
#   native/test/run.sh --tsan     ThreadSanitizer (halts on the first report)
#   native/test/run.sh --asan     AddressSanitizer + LeakSanitizer
#
# Extra arguments go to the test binary (e.g. --gtest_filter='Base*').
# Needs: cmake, g++, googletest (libgtest-dev), libpocketsphinx-dev,
# pocketsphinx-en-us, pocketsphinx-testdata (scripts/setup.sh --test).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mode=plain
sanitize=""
case "${1:-}" in
  --tsan) mode=tsan; sanitize=thread; shift ;;
  --asan) mode=asan; sanitize=address; shift ;;
  --plain) shift ;;
esac
build="$here/../build-test/$mode"
cmake -S "$here" -B "$build" -DSANITIZE="$sanitize" -DCMAKE_BUILD_TYPE=None >/dev/null
cmake --build "$build" -j 2 >/dev/null
case "$mode" in
  tsan) export TSAN_OPTIONS="halt_on_error=1 abort_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" ;;
  asan) export ASAN_OPTIONS="abort_on_error=1 detect_leaks=1 detect_stack_use_after_return=1 ${ASAN_OPTIONS:-}" ;;
esac
# TSan needs a fixed memory layout; newer kernels randomize more than it
# expects ("unexpected memory mapping"), so run without ASLR when possible.
if [[ "$mode" == tsan ]] && command -v setarch >/dev/null && setarch "$(uname -m)" -R true 2>/dev/null; then
  exec setarch "$(uname -m)" -R "$build/engine_tests" "$@"
fi
exec "$build/engine_tests" "$@"
