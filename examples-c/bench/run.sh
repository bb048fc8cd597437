#!/bin/sh
# run.sh BENCH_CAPI MODEL SCRATCH SWIFT STATIC [SIZE BATCH REPEATS ROUNDS THREADS]
#
# Prints ms/image of feature extraction through the C ABI (bench_capi over libneco.so) next to
# the Swift API (neco-bench-swift, built here with the same SwiftPM flags as libneco.so), and the
# overhead of the C boundary. The two programs alternate for ROUNDS rounds of REPEATS timed runs
# each; the table shows, for each, the median over rounds of the per-round median and the minimum
# over all runs, in wall time and in the calling thread's CPU time (with THREADS = 1 all the work
# runs on that thread, so the CPU figure hardly depends on other load on a shared machine).
# neco-bench-swift also alternates the two call for call inside one process (same load for both).
# THREADS 0 = all cores. `cmake --build build --target neco_bench` runs it with the default model.
set -eu
capi=$1 model=$2 scratch=$3 swift=$4 static=$5
size=${6:-224} batch=${7:-1} repeats=${8:-10} rounds=${9:-5} threads=${10:-0}
if [ ! -f "$model" ]; then echo "model $model missing: run scripts/setup.sh"; exit 77; fi
sha=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
flags=""
case "$static" in ON|on|1|TRUE|true) flags="-Xswiftc -static-stdlib" ;; esac
# shellcheck disable=SC2086
env -u CC -u CXX "$swift" build -c release --product neco-bench-swift --scratch-path "$scratch" -Xcc "-DNECO_GIT_SHA=\"$sha\"" $flags >/dev/null
swiftbench="$scratch/release/neco-bench-swift"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
i=0
while [ $i -lt "$rounds" ]; do
    "$swiftbench" "$model" "$size" "$batch" "$repeats" 0 "$threads" | grep -E '^(BENCH|INPROC)' >> "$log"
    "$capi" "$model" "$size" "$batch" "$repeats" 0 "$threads" | grep '^BENCH' >> "$log"
    i=$((i + 1))
done
awk -v size="$size" -v batch="$batch" -v rounds="$rounds" -v repeats="$repeats" '
    function field(name,   i, kv) { for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] } }
    function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                       return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    function lo(old, v) { return (old == "" || v < old) ? v : old }
    function row(name, a, b) { printf "  %-36s %9.2f %9.2f\n", name, a, b }
    function over(a, b) { return 100 * (b - a) / a }
    $1 == "INPROC" {
        ni++; is[ni] = field("swift_ms_per_image") + 0; ic[ni] = field("capi_ms_per_image") + 0
        isc[ni] = field("swift_cpu") + 0; icc[ni] = field("capi_cpu") + 0
        ibs = lo(ibs, field("swift_min") + 0); ibc = lo(ibc, field("capi_min") + 0)
        next
    }
    $1 == "BENCH" {
        k = $2; n[k]++; threads = field("threads")
        wall[k, n[k]] = field("ms_per_image") + 0; cpu[k, n[k]] = field("cpu_ms_per_image") + 0
        best[k] = lo(best[k], field("min_ms_per_image") + 0); cbest[k] = lo(cbest[k], field("cpu_min") + 0)
        printf "round %d %-5s wall median %8.2f min %8.2f | CPU median %8.2f ms/image\n", n[k], k, wall[k, n[k]], field("min_ms_per_image"), cpu[k, n[k]]
    }
    END {
        for (i = 1; i <= n["swift"]; i++) { ws[i] = wall["swift", i]; cs[i] = cpu["swift", i] }
        for (i = 1; i <= n["capi"]; i++) { wc[i] = wall["capi", i]; cc[i] = cpu["capi", i] }
        mws = median(ws, n["swift"]); mwc = median(wc, n["capi"]); mcs = median(cs, n["swift"]); mcc = median(cc, n["capi"])
        printf "\nextraction at %dx%d, batch %d, %s worker threads (%d rounds x %d runs), ms/image:\n", size, size, batch, threads, rounds, repeats
        printf "  two processes: Swift program vs C program over libneco.so    median       min\n"
        row("Swift API, wall", mws, best["swift"]); row("C ABI, wall", mwc, best["capi"])
        printf "  %-36s %+8.2f%% %+8.2f%%\n", "C boundary overhead, wall", over(mws, mwc), over(best["swift"], best["capi"])
        row("Swift API, thread CPU", mcs, cbest["swift"]); row("C ABI, thread CPU", mcc, cbest["capi"])
        printf "  %-36s %+8.2f%% %+8.2f%%\n", "C boundary overhead, CPU", over(mcs, mcc), over(cbest["swift"], cbest["capi"])
        if (ni > 0) {
            printf "  one process, calls alternating (same load for both)\n"
            row("Swift API, wall", median(is, ni), ibs); row("neco_extract_nchw, wall", median(ic, ni), ibc)
            printf "  %-36s %+8.2f%% %+8.2f%%\n", "C boundary overhead, wall", over(median(is, ni), median(ic, ni)), over(ibs, ibc)
            printf "  %-36s %+8.2f%%\n", "C boundary overhead, CPU (median)", over(median(isc, ni), median(icc, ni))
        }
        if (threads != 1) printf "(thread CPU time is only the whole cost with 1 worker thread: pass THREADS = 1)\n"
    }' "$log"
