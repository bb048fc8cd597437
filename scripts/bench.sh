#!/usr/bin/env bash
# Inference benchmark: libneco's forward next to PyTorch (timm) on the same machine, same thread
# count, in the same run, printed as a ratio. ViT-S/14 with 4 registers at 224, batch 1 and 8;
# with ARCH dinov3_vits16, DINOv3 ViT-S/16 (timm vit_small_patch16_dinov3) instead.
#   scripts/bench.sh [threads] [rounds] [vits14_reg4|dinov3_vits16]
# PyTorch runs when its environment exists (scripts/setup.sh --reference creates it).
# The machines are shared and noisy: the script interleaves the two sides over several rounds and
# reports the median of each side, with the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ROUNDS=${2:-3}
ARCH=${3:-vits14_reg4}
case "$ARCH" in
  vits14_reg4) NECO_ARGS=(); TIMM_VARIANT=vit_small_patch14_reg4_dinov2 ;;
  dinov3_vits16) NECO_ARGS=(--config dinov3_vits16); TIMM_VARIANT=vit_small_patch16_dinov3 ;;
  *) echo "unknown ARCH '$ARCH' (vits14_reg4 or dinov3_vits16)" >&2; exit 2 ;;
esac
REF=${NECO_REF_VENV:-$HOME/.cache/neco-ref}
scripts/setup.sh >/dev/null
swift build -c release --product neco >/dev/null
echo "$ARCH; load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores, $THREADS threads"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
have_torch=0
"$REF/bin/python" -c "import torch" 2>/dev/null && have_torch=1
for r in $(seq "$ROUNDS"); do
  .build/release/neco bench "${NECO_ARGS[@]}" --threads "$THREADS" --batches 1,8 --repeats 5 | grep '^BENCH' >> "$tmp/neco"
  if [ "$have_torch" = 1 ]; then
    "$REF/bin/python" scripts/bench_torch.py --variant "$TIMM_VARIANT" --threads "$THREADS" --batches 1,8 --repeats 5 >> "$tmp/torch"
  fi
done
python3 - "$tmp" "$have_torch" <<'PY'
import sys, statistics, re, os
tmp, have_torch = sys.argv[1], sys.argv[2] == "1"
def parse(path):
    rows = {}
    if not os.path.exists(path): return rows
    for line in open(path):
        kv = dict(re.findall(r"(\w+)=([\d.]+)", line))
        rows.setdefault(int(kv["batch"]), []).append(kv)
    return rows
neco, torch = parse(f"{tmp}/neco"), parse(f"{tmp}/torch")
print(f"{'batch':>5} {'neco img/s':>11} {'GFLOP/s':>8} {'RSS MiB':>8} {'torch img/s':>12} {'RSS MiB':>8} {'ratio':>6}")
for b in sorted(neco):
    n = statistics.median(float(r["img_per_s"]) for r in neco[b])
    g = statistics.median(float(r["gflops"]) for r in neco[b])
    rss = max(float(r["peak_rss_mib"]) for r in neco[b])
    if b in torch:
        t = statistics.median(float(r["img_per_s"]) for r in torch[b])
        trss = max(float(r["peak_rss_mib"]) for r in torch[b])
        print(f"{b:>5} {n:>11.2f} {g:>8.1f} {rss:>8.0f} {t:>12.2f} {trss:>8.0f} {n / t:>6.2f}")
    else:
        print(f"{b:>5} {n:>11.2f} {g:>8.1f} {rss:>8.0f} {'(no torch)':>12}")
PY
