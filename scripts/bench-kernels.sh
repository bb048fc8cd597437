#!/usr/bin/env bash
# Single-thread timings of libneco's attention and Linear kernels on every kernel path this CPU has,
# the Linear products next to OpenBLAS (Tests/KernelsC/kernel_bench.c, built here with the library's
# kernel sources as SwiftPM compiles them). Figures only; keep the machine otherwise idle.
#   scripts/bench-kernels.sh [all|attention|gemm] [repetitions]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${SWIFT_ROOT:-/opt/swift}/usr/bin:$PATH"
src=Sources/CNecoKernels
out=.build/kernel-check
mkdir -p "$out"
clang -O2 -Wall -Wextra -Werror -I"$src/include" -I"$src" Tests/KernelsC/kernel_bench.c "$src"/*.c \
  -lopenblas -lpthread -lm -o "$out/kernel_bench"
"$out/kernel_bench" "$@"
