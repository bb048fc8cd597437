#!/usr/bin/env bash
# The kernels alone, in C (Sources/CNecoKernels, compiled as SwiftPM compiles them: -O2, no target
# flags).
#   scripts/check-kernels.sh
#     builds Tests/KernelsC/kernel_check.c and runs it natively, on every kernel path this CPU has,
#     and on x86-64 also for arm64 under qemu-aarch64, which runs the NEON path that no machine
#     here runs natively and the Swift suites cannot reach. Needs clang (the Swift toolchain's) and,
#     for arm64, qemu-user and the arm64 C library (libc6-dev-arm64-cross, libgcc-12-dev-arm64-cross),
#     which scripts/setup.sh --test installs. Exit status 0 means every check passed on every path.
#   scripts/check-kernels.sh --bench [attention|gemm] [repetitions]
#     builds Tests/KernelsC/kernel_bench.c and prints single-thread timings of attention and the
#     Linear products on every path, the products next to OpenBLAS. Figures only; keep the
#     machine otherwise idle.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${SWIFT_ROOT:-/opt/swift}/usr/bin:$PATH"
src=Sources/CNecoKernels
out=.build/kernel-check
mkdir -p "$out"
flags=(-O2 -Wall -Wextra -Werror -I"$src/include" -I"$src")

if [ "${1:-}" = --bench ]; then
  shift
  clang "${flags[@]}" Tests/KernelsC/kernel_bench.c "$src"/*.c -lopenblas -lpthread -lm -o "$out/kernel_bench"
  exec "$out/kernel_bench" "$@"
fi

sources=(Tests/KernelsC/kernel_check.c "$src"/*.c)
echo "== kernel check, native ($(uname -m))"
clang "${flags[@]}" "${sources[@]}" -lpthread -lm -o "$out/kernel_check"
"$out/kernel_check"

if [ "$(uname -m)" = x86_64 ]; then
  echo "== kernel check, arm64 under qemu-aarch64"
  for need in qemu-aarch64 /usr/aarch64-linux-gnu/lib/libc.a; do
    if ! command -v "$need" >/dev/null 2>&1 && [ ! -e "$need" ]; then
      echo "missing $need: run scripts/setup.sh --test (qemu-user, libc6-dev-arm64-cross, libgcc-12-dev-arm64-cross)" >&2
      exit 1
    fi
  done
  clang --target=aarch64-linux-gnu -fuse-ld=lld -static "${flags[@]}" "${sources[@]}" -lpthread -lm \
    -o "$out/kernel_check_arm64"
  qemu-aarch64 "$out/kernel_check_arm64"
fi
