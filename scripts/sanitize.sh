#!/usr/bin/env bash
# sanitize.sh: the C examples and abuse tests under AddressSanitizer + UndefinedBehaviorSanitizer,
# and the threads test under ThreadSanitizer, against an existing libneco.so.
#
#   scripts/sanitize.sh LIBNECO_SO TINY_MODEL PHOTOS_DIR [WORK_DIR]
#
# Compiles examples-c/tests/abuse.c, examples-c/tests/hostile.c and examples-c/c/extract_neighbors.c
# with clang -fsanitize=address,undefined, and examples-c/tests/threads.c with -fsanitize=thread,
# runs them (tiny model) and prints "SANITIZE OK" when every run is clean. libneco itself is not
# instrumented: ASan sees its heap through the malloc interceptors (overflows of caller buffers,
# use after free, double free), UBSan and TSan check the C side (TSan: the threads test's own
# accesses and the library's pthread synchronisation). Leak checking is left to the valgrind tests
# (the Swift runtime keeps caches that LeakSanitizer would report). The hostile cases that set
# RLIMIT_AS are skipped under ASan (its shadow memory needs terabytes of address space).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lib=$1 tiny=$2 photos=$3 work=${4:-$root/.build/sanitize}
clang=${NECO_SANITIZE_CC:-}
for c in "$clang" /opt/swift/usr/bin/clang clang; do
  if [ -n "$c" ] && command -v "$c" >/dev/null; then clang=$c; break; fi
done
mkdir -p "$work/libdir"
cp "$lib" "$work/libdir/libneco.so"
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ -z "$soname" ] || [ "$soname" = libneco.so ] || cp "$lib" "$work/libdir/$soname"
ex=$root/examples-c
cflags=(-std=c11 -g -O1 -fno-omit-frame-pointer -I"$root/include" -L"$work/libdir" -lneco -Wl,-rpath,"$work/libdir" -lm -lpthread)
asan=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
t0=$(date +%s)
build() { "$@" >>"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }; }  # (gold warns about ASan symbols)
: > "$work/build.log"
build "$clang" "${asan[@]}" "$ex/tests/abuse.c" "${cflags[@]}" -o "$work/abuse_asan"
build "$clang" "${asan[@]}" "$ex/tests/hostile.c" "${cflags[@]}" -o "$work/hostile_asan"
build "$clang" "${asan[@]}" "$ex/c/extract_neighbors.c" "${cflags[@]}" -o "$work/example_asan"
# The Swift toolchain's TSan runtime has libdispatch interceptors: it needs libdispatch and the
# blocks runtime, which the toolchain ships next to its Swift libraries.
tsan_libs=()
rt=$(dirname "$(dirname "$(command -v "$clang")")")/lib/swift/linux
[ -f "$rt/libdispatch.so" ] && tsan_libs=(-L"$rt" -ldispatch -lBlocksRuntime -Wl,-rpath,"$rt")
build "$clang" -fsanitize=thread "$ex/tests/threads.c" "${cflags[@]}" "${tsan_libs[@]}" -o "$work/threads_tsan"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# die_after_fork=0: the threads test forks after libneco's worker pool started, and the child
# starts a pool of its own (TSan refuses new threads after a multi-threaded fork by default).
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:die_after_fork=0 OPENBLAS_NUM_THREADS=1
status=0
run() {  # name pattern command...
  local name=$1 pattern=$2; shift 2
  local s=$(date +%s) out
  if out=$("$@" 2>&1) && grep -q "$pattern" <<<"$out"; then
    echo "SANITIZE $name: clean ($(( $(date +%s) - s )) s)"
  else
    echo "SANITIZE $name: FAILED"; tail -40 <<<"$out"; status=1
  fi
}
run abuse_asan_ubsan "ABUSE OK" "$work/abuse_asan" "$tiny"
run hostile_asan_ubsan "HOSTILE OK" "$work/hostile_asan" "$tiny"
if [ -f "$photos/chelsea.png" ]; then
  run c_example_asan_ubsan "C EXAMPLE OK" "$work/example_asan" "$tiny" "$photos/chelsea.png" "$photos/coffee.png" 4 112
  run threads_tsan "THREADS OK" "$work/threads_tsan" "$tiny" 4 "$photos/chelsea.png" 112 4
else
  echo "SANITIZE: no sample photos in $photos; the example and threads runs are skipped"
fi
echo "sanitizer runs took $(( $(date +%s) - t0 )) s"
[ $status = 0 ] && echo "SANITIZE OK" || { echo "SANITIZE FAILED"; exit 1; }
