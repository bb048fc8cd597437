#!/usr/bin/env bash
# run.sh: builds the libFuzzer targets of fuzz/ and runs each for a while.
#
#   fuzz/run.sh [--seconds N] [--lib PATH] [--instrumented] [--out DIR] [target ...]
#
#   --seconds N      time per target (default 15: the CTest smoke; the campaign in the README used 1800)
#   --lib PATH       the libneco.so to fuzz (default: build/cmake's lib/libneco.so, i.e. the
#                    library CTest built; it has no coverage instrumentation, so the fuzzer mutates
#                    blind inside it: fine for a smoke run of the seeds and their neighbours)
#   --instrumented   build libneco with SwiftPM's -sanitize=fuzzer (coverage-guided; a separate
#                    release build in .build-fuzz, about 10 minutes the first time) and fuzz that
#   --out DIR        work folder (default .build-fuzz/run): corpora, crashes, logs
#   target           image_decode model_load header_parse checkpoint_step (default: all four)
#
# The targets are compiled with clang -fsanitize=fuzzer,address,undefined. Each run prints
# "FUZZ <target>: <executions> executions, <n> crashes"; the script exits 1 when any target
# found a crash, leak or timeout (the reproducer is in DIR/<target>/artifacts).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=15 lib="" instrumented=0 out="$root/.build-fuzz/run"
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --lib) lib=$2; shift 2 ;;
    --instrumented) instrumented=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(image_decode model_load header_parse checkpoint_step)
clang=${NECO_FUZZ_CC:-}
for c in "$clang" /opt/swift/usr/bin/clang clang; do
  if [ -n "$c" ] && command -v "$c" >/dev/null && "$c" -fsanitize=fuzzer -x c -o /dev/null - <<<'int LLVMFuzzerTestOneInput(const unsigned char*d,unsigned long n){(void)d;(void)n;return 0;}' 2>/dev/null; then
    clang=$c; break
  fi
  clang=""
done
[ -n "$clang" ] || { echo "fuzz/run.sh: no clang with libFuzzer (-fsanitize=fuzzer) found" >&2; exit 2; }

if [ $instrumented = 1 ]; then
  echo "== building libneco with coverage instrumentation (.build-fuzz)"
  (cd "$root" && swift build -c release --product NecoCAPI --scratch-path .build-fuzz \
     -Xswiftc -sanitize=fuzzer -Xcc -fsanitize=fuzzer-no-link -Xswiftc -static-stdlib >/dev/null)
  lib="$root/.build-fuzz/release/libNecoCAPI.so"
fi
if [ -z "$lib" ]; then
  for c in "$root"/.build/cmake/lib/libneco.so* "$root"/build/lib/libneco.so*; do [ -f "$c" ] && lib=$c && break; done
fi
[ -f "$lib" ] || { echo "fuzz/run.sh: no libneco.so (build with CMake first, or pass --lib / --instrumented)" >&2; exit 2; }

mkdir -p "$out/bin" "$out/libdir"
# Link against a copy named libneco.so, and under its soname (libneco.so.0) for the loader.
cp "$lib" "$out/libdir/libneco.so"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -z "$soname" ] || [ "$soname" = libneco.so ] || cp "$lib" "$out/libdir/$soname"
"$root/fuzz/make_corpus.sh" "$out/seeds"
model="$root/Tests/Fixtures/vit/tiny_reg4.weights.safetensors"
failed=0
for t in "${targets[@]}"; do
  "$clang" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/include" -DNECO_FUZZ_DEFAULT_MODEL="\"$model\"" "$root/fuzz/$t.c" \
    -L"$out/libdir" -lneco -Wl,-rpath,"$out/libdir" -o "$out/bin/$t" >"$out/build-$t.log" 2>&1 \
    || { cat "$out/build-$t.log"; exit 2; }
  rm -rf "$out/$t/artifacts"
  mkdir -p "$out/$t/corpus" "$out/$t/artifacts"
  log="$out/$t/log.txt"
  rc=0
  # detect_leaks=0: the Swift runtime keeps caches that LeakSanitizer reports at exit;
  # valgrind_abuse covers leaks of the C ABI.
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 OPENBLAS_NUM_THREADS=1 \
    "$out/bin/$t" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=3072 -print_final_stats=1 \
    -artifact_prefix="$out/$t/artifacts/" "$out/$t/corpus" "$out/seeds/$t" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  crashes=$(find "$out/$t/artifacts" -type f | wc -l)
  echo "FUZZ $t: ${execs:-0} executions in ${seconds} s, $crashes crashes (exit $rc; log $log)"
  if [ $rc != 0 ] || [ "$crashes" != 0 ]; then
    failed=1
    grep -m5 -E "ERROR|Fatal|SUMMARY|deadly|abort" "$log" || true
  fi
done
[ $failed = 0 ] && echo "FUZZ OK" || { echo "FUZZ FAILED"; exit 1; }
