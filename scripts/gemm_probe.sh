#!/usr/bin/env bash
# Would an own GEMM micro-kernel beat OpenBLAS on ViT-S/14's shapes? Builds and runs
# scripts/probe/gemm_probe.c (AVX-512 machines only; see the file's header). Usage:
#   scripts/gemm_probe.sh [THREADS (default: all cores)] [REPEATS (default 9)]
# Run it on a quiet machine: it prints best-of-REPEATS GFLOP/s of OpenBLAS and of the own kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.build/gemm_probe
mkdir -p .build
cc=${CC:-clang}
inc=$(pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
# shellcheck disable=SC2086
"$cc" -O2 -std=c11 -D_GNU_SOURCE $inc scripts/probe/gemm_probe.c -o "$out" -lopenblas -lpthread -lm
OPENBLAS_NUM_THREADS=1 "$out" "${1:-$(nproc)}" "${2:-9}"
