#!/usr/bin/env bash
# Sets everything up (idempotent) and runs every test: the Swift test suites, a Swift package that
# depends on a tagged clone of this one (scripts/test-swift-consumer.sh, about 2 minutes) and the
# C/C++ CTest suite (examples, install-tree consumers, the C abuse test). Exit status 0 means all passed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "== swift test (release: the parity tests run full-size ViT forwards)"
swift test -c release
# The numeric parity subset once more on the portable kernel path (what a CPU without AVX2 runs);
# the run above used the best path of this CPU (see CPUFeatures, NECO_CPU).
echo "== swift test, numeric parity on NECO_CPU=portable"
NECO_CPU=portable swift test -c release --skip-build \
  --filter 'NecoCoreTests|ViTParityTests|LayerGradTests|PyTorchParityTests|OfficialStepTests|ViTTrainingTests|FeaturesTests|ONNXRuntimeParityTests|DINOv3'
# The kernels alone in C on every path this CPU has, and their NEON path for arm64 under emulation.
scripts/check-kernels.sh
echo "== Swift consumer: libneco as a versioned (from: 0.1.0) dependency of another package"
scripts/test-swift-consumer.sh
if [ -f CMakeLists.txt ]; then
  echo "== cmake + ctest"
  cmake -S . -B .build/cmake -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PWD/.build/cmake-install" >/dev/null
  cmake --build .build/cmake -j"$(nproc)"
  ctest --test-dir .build/cmake --output-on-failure
fi
echo "== all tests passed"
