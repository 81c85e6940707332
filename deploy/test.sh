#!/bin/sh
# Installs what is needed (Debian 12), builds with ASan+UBSan and runs the
# whole test suite with ctest. Every test makes its own SoftHSM token in a
# temporary directory; nothing on the system is touched.
#
#   ./deploy/test.sh [BUILD_DIR]      (default: build-test)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build-test}

./deploy/bootstrap.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DDKIMHSM_SANITIZE=ON >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
