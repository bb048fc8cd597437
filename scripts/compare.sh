#!/usr/bin/env bash
# Three engines on the same weights, on this machine, in one run: libneco, PyTorch/timm, and ONNX
# Runtime on libneco's own ONNX export; then the training step, libneco against PyTorch.
#   scripts/compare.sh [threads] [rounds]          (defaults: 2 threads, 3 rounds)
#
# Model: ViT-S/14 with 4 registers (timm's vit_small_patch14_reg4_dinov2) at 224x224, seeded random
# weights written once by PyTorch as a timm safetensors file; libneco loads that file and exports
# the ONNX file ORT runs (fixed 224x224 input), so all three run the same weights. Inference at
# batch 1 and 8; each engine runs in its own process per round and the engines take turns
# (interleaved, libneco first in odd rounds and last in even ones), `rounds` times; medians are
# reported, with the ratios libneco / other. These 2-core machines have slow spells of a minute or
# more that slow every engine (batch 1 most), so a ratio of medians can pair one engine's quiet
# rounds with another's slow ones; the script also prints each round's ratio (the two engines
# measured back to back) and RATIO gives the median of those per-round ratios. GFLOP/s
# counts the forward's multiply-adds x2 (libneco's count, the same for every engine); % of peak is
# against the FMA peak that `neco bench` measures on the same threads. Peak RSS is each process's
# maximum. The training step is `neco train-bench` (8 images x 2 views at 224, MSE between student
# and EMA-teacher patch tokens, AdamW) against scripts/bench_train_torch.py, also interleaved, and
# once more with `--memory-limit $NECO_TRAIN_LIMIT` (default 980 MiB of state: RSS within 1 GiB).
# The step is also split into phases (the two forwards, backward, optimizer) with each engine's
# GFLOP/s and % of peak, and each round's PyTorch step is turned into the share of the FMA peak that
# 1.5x its rate would need at the same FLOPs.
# Needs the PyTorch venv (NECO_REF_VENV, default ~/.cache/neco-ref) and the tools venv with
# onnxruntime (~/.cache/neco/venv; scripts/setup.sh makes it).
# The last line is: RATIO ort_b1=... ort_b8=... torch_b1=... torch_b8=... torch_train=... (medians of
# the per-round ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ROUNDS=${2:-3}
REF=${NECO_REF_VENV:-$HOME/.cache/neco-ref}
TOOLS=${NECO_TOOLS_VENV:-$HOME/.cache/neco/venv}
LIMIT=${NECO_TRAIN_LIMIT:-980}   # MiB of training state for the second libneco training row (RSS within 1 GiB)
swift build -c release --product neco >/dev/null
NECO=.build/release/neco
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $THREADS threads, $ROUNDS rounds"
probe=$("$NECO" bench --threads 1 --batches 1 --repeats 1 --no-peak)
echo "libneco kernel path: $(echo "$probe" | sed -n 's/^cpu path *//p')"
flops=$(echo "$probe" | sed -n 's/.*, \([0-9.]*\) GFLOP\/img.*/\1/p')
"$REF/bin/python" scripts/bench_torch.py --size 224 --save-weights "$tmp/vits14_reg4.safetensors"
"$NECO" export --model "$tmp/vits14_reg4.safetensors" --out "$tmp/vits14_reg4.onnx" --size 224 >/dev/null
run_neco() { "$NECO" bench --model "$tmp/vits14_reg4.safetensors" --threads "$THREADS" --batches "$1" --repeats 5 \
  | grep -E '^(BENCH|PEAK)' >> "$tmp/neco"; }
run_torch() { "$REF/bin/python" scripts/bench_torch.py --weights "$tmp/vits14_reg4.safetensors" --threads "$THREADS" \
  --batches "$1" --repeats 5 >> "$tmp/torch"; }
run_ort() { "$TOOLS/bin/python" scripts/bench_ort.py "$tmp/vits14_reg4.onnx" --threads "$THREADS" --batches "$1" \
  --repeats 5 >> "$tmp/ort"; }
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS: inference"
  # Odd rounds libneco first, even rounds last, so no engine always follows the same one.
  order="neco torch ort"; [ $((r % 2)) -eq 0 ] && order="ort torch neco"
  for b in 1 8; do
    for e in $order; do "run_$e" "$b"; done
  done
done
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS: training step"
  "$NECO" train-bench --threads "$THREADS" --steps 3 --no-torch | grep '^NECO_TRAIN' >> "$tmp/neco_train"
  "$NECO" train-bench --threads "$THREADS" --steps 3 --no-torch --memory-limit "$LIMIT" | grep '^NECO_TRAIN' >> "$tmp/neco_train_limit"
  "$REF/bin/python" scripts/bench_train_torch.py --threads "$THREADS" --steps 3 | grep '^TORCH_TRAIN' >> "$tmp/torch_train"
done
python3 - "$tmp" "$flops" "$LIMIT" <<'PY'
import os, re, statistics, sys
tmp, gflop_img, limit = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def rows(name):
    out = []
    path = os.path.join(tmp, name)
    if os.path.exists(path):
        for line in open(path):
            out.append({k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)} | {"tag": line.split()[0]})
    return out
neco, torch, ort = rows("neco"), rows("torch"), rows("ort")
peak = statistics.median(r["gflops"] for r in neco if r["tag"] == "PEAK")
def med(rs, b, key="img_per_s"):
    return statistics.median(r[key] for r in rs if r.get("batch") == b and r["tag"] != "PEAK")
def rss(rs, b):
    return max(r["peak_rss_mib"] for r in rs if r.get("batch") == b and r["tag"] != "PEAK")
print(f"\nmeasured FMA peak (median of rounds): {peak:.1f} GFLOP/s; {gflop_img:.2f} GFLOP per image (224x224)")
print(f"{'':22}{'img/s':>8}{'GFLOP/s':>9}{'% peak':>8}{'RSS MiB':>9}{'libneco/x':>11}")
ratio = {}
for b in (1, 8):
    n = med(neco, b)
    for name, rs in (("libneco", neco), ("PyTorch 2 timm", torch), ("ONNX Runtime", ort)):
        v = med(rs, b)
        label = name.replace(" 2 ", " / ")
        print(f"{label + f', batch {b}':22}{v:>8.2f}{v * gflop_img:>9.1f}{100 * v * gflop_img / peak:>8.1f}"
              f"{rss(rs, b):>9.0f}{n / v:>11.2f}")
    ratio[f"torch_b{b}"] = n / med(torch, b)
    ratio[f"ort_b{b}"] = n / med(ort, b)
nt, tt = rows("neco_train"), rows("torch_train")
nv = statistics.median(r["views_per_s"] for r in nt)
tv = statistics.median(r["views_per_s"] for r in tt)
train_gflop_view = 4 * gflop_img  # per view: teacher forward + student forward + backward (2x forward)
print(f"\ntraining step (16 views at 224):   views/s  step s   RSS MiB")
print(f"  libneco                         {nv:>7.2f} {statistics.median(r['step_s'] for r in nt):>7.2f} {max(r['peak_rss_mib'] for r in nt):>9.0f}")
nl = rows("neco_train_limit")
if nl:
    lv = statistics.median(r["views_per_s"] for r in nl)
    blocks = ",".join(sorted({str(int(r.get("recomputed_blocks", 0))) for r in nl}))
    print(f"  libneco --memory-limit {limit:<9}{lv:>7.2f} {statistics.median(r['step_s'] for r in nl):>7.2f} "
          f"{max(r['peak_rss_mib'] for r in nl):>9.0f}   ({blocks} blocks recompute; {lv / tv:.2f}x PyTorch)")
print(f"  PyTorch                         {tv:>7.2f} {statistics.median(r['step_s'] for r in tt):>7.2f} {max(r['peak_rss_mib'] for r in tt):>9.0f}")
ratio["torch_train"] = nv / tv
print(f"  libneco / PyTorch {nv / tv:.2f}; GFLOP/s (4x forward per view) libneco {nv * train_gflop_view:.1f} "
      f"({100 * nv * train_gflop_view / peak:.1f} % of peak), PyTorch {tv * train_gflop_view:.1f}")
# Per phase: the two forwards (teacher without grad, student with) are 2 forwards' FLOPs, the
# backward 2 more (input and weight gradients); medians over the rounds.
views = statistics.median(r["views"] for r in nt)
print(f"\ntraining phases (medians)          libneco s  GFLOP/s  % peak   PyTorch s  GFLOP/s  % peak   libneco/PyTorch")
for label, keys, fwds in (("teacher + student forward", ("teacher_fwd_s", "student_fwd_s"), 2),
                          ("backward", ("backward_s",), 2), ("clip + EMA + AdamW", ("optimizer_s",), 0)):
    ns = statistics.median(sum(r[k] for k in keys) for r in nt)
    ts = statistics.median(sum(r[k] for k in keys) for r in tt)
    g = fwds * views * gflop_img
    cols = (f"{ns:>9.3f}{g / ns:>9.1f}{100 * g / ns / peak:>8.1f}{ts:>11.3f}{g / ts:>9.1f}{100 * g / ts / peak:>8.1f}"
            if g else f"{ns:>9.3f}{'':17}{ts:>11.3f}{'':17}")
    print(f"  {label:<32}{cols}{ts / ns:>11.2f}")
# What the training target asks of this CPU: 1.5x PyTorch's step rate on the same FLOPs, as a share
# of the FMA peak measured here (per round, against the PyTorch step measured in that round).
need = [100 * 1.5 * r["views_per_s"] * train_gflop_view / peak for r in tt]
print(f"  1.5x PyTorch's step would need " + " ".join(f"{x:.0f}" for x in need) +
      f" % of the FMA peak for the whole step (per round; median {statistics.median(need):.0f} %); "
      f"libneco runs at {100 * nv * train_gflop_view / peak:.0f} %, PyTorch at {100 * tv * train_gflop_view / peak:.0f} %")
# Paired: in each round, libneco over the other engine measured next to it (same spell of the
# machine); the median of those per-round ratios. RATIO reports these.
def per_round(rs, b=None, key="img_per_s"):
    return [r[key] for r in rs if (b is None or r.get("batch") == b) and r["tag"] != "PEAK"]
paired = {}
for b in (1, 8):
    for name, rs in (("torch", torch), ("ort", ort)):
        paired[f"{name}_b{b}"] = [x / y for x, y in zip(per_round(neco, b), per_round(rs, b))]
paired["torch_train"] = [x / y for x, y in zip(per_round(nt, key="views_per_s"), per_round(tt, key="views_per_s"))]
print("\nlibneco / engine per round (each pair measured in the same round), and their median:")
for k in ("ort_b1", "ort_b8", "torch_b1", "torch_b8", "torch_train"):
    print(f"  {k:<12} " + " ".join(f"{x:.2f}" for x in paired[k]) + f"   median {statistics.median(paired[k]):.2f}"
          f"   (ratio of medians {ratio[k]:.2f})")
print("RATIO " + " ".join(f"{k}={statistics.median(paired[k]):.2f}" for k in ("ort_b1", "ort_b8", "torch_b1", "torch_b8", "torch_train")))
PY
