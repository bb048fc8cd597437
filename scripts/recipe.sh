#!/usr/bin/env bash
# The NeCo CPU recipe end to end, from the embedded default model (DINOv2 ViT-S/14):
#   1. post-pretrain it with NeCo on the benchmark's *training* images (never validation), with
#      the in-context evaluation every EVAL_EVERY steps on SELECT held-out training images, which
#      chooses the checkpoint (run folder: curves.png, eval.csv, best.safetensors);
#   2. evaluate the default model (A) and the best student (B) with all three protocols on the
#      validation split (`neco eval --bench all --compare`), and a picture of before/after
#      segmentations (RUN/compare.png).
# The last line is: GAIN incontext=+X.X linear=+Y.Y cluster=+Z.Z steps=N minutes=M, after a RANKME A=… B=…
# line (the effective rank of the validation patch features, when `neco eval` computed it).
# (cluster: the K = 300 overclustering row). Settings come from the environment (defaults: the
# recipe in docs/EXPERIMENTS.md): RUN, STEPS, BATCH, LR_BACKBONE, LR_HEAD, TRAIN_LAST, HEAD_ONLY (steps
# in which the projection head learns alone before the backbone; 0 = from the first step), EVAL_EVERY,
# STOP_AFTER (train only the first N of the STEPS steps, default 30; 0 = all), SEED, THREADS, BENCH, EVAL_BENCH (all, or incontext for a quicker check), SELECT (training images
# held out for choosing the checkpoint, default 50; 0 = choose on the validation split), REFERENCES (queue or
# batch), EXTRA (more `neco train` options, e.g. "--steepness 50 --drop-path 0"). Rerunning continues a stopped run and re-evaluates a finished one.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -z "${NECO:-}" ]; then  # NECO=path runs a given binary (no build)
  swift build -c release --product neco
  NECO=.build/release/neco
fi
CACHE=${NECO_CACHE:-$HOME/.cache/neco}
BENCH=${BENCH:-$CACHE/bench/synth}
RUN=${RUN:-out/recipe}
STEPS=${STEPS:-80}
BATCH=${BATCH:-4}
LR_BACKBONE=${LR_BACKBONE:-1e-4}
LR_HEAD=${LR_HEAD:-1e-3}
TRAIN_LAST=${TRAIN_LAST:-4}
HEAD_ONLY=${HEAD_ONLY:-20}
EVAL_EVERY=${EVAL_EVERY:-10}
SEED=${SEED:-0}
THREADS=${THREADS:-$(nproc)}
EVAL_BENCH=${EVAL_BENCH:-all}
start=$(date +%s)

# The checkpoint is chosen on a selection split carved out of the *training* images (the last
# SELECT of them, 50 by default, as a benchmark of 150 memory + SELECT query images), so the
# validation split is used once, for the final numbers. SELECT=0 selects on the validation split.
SELECT=${SELECT:-50}
EVAL_DATA=$BENCH
if [ "$SELECT" -gt 0 ]; then
  EVAL_DATA="$RUN.select"
  if [ ! -f "$EVAL_DATA/classes.txt" ]; then
    mkdir -p "$EVAL_DATA"/{train,val}/{images,labels}
    cp "$BENCH/classes.txt" "$BENCH/manifest.json" "$EVAL_DATA/"
    mapfile -t names < <(ls "$BENCH/train/images" | sort)
    n=${#names[@]}
    for i in "${!names[@]}"; do
      stem=${names[$i]%.*}
      part=train; [ "$i" -ge $((n - SELECT)) ] && part=val
      ln -sf "$(cd "$BENCH/train/images" && pwd)/${names[$i]}" "$EVAL_DATA/$part/images/${names[$i]}"
      ln -sf "$(cd "$BENCH/train/labels" && pwd)/$stem.png" "$EVAL_DATA/$part/labels/$stem.png"
    done
  fi
fi

# STOP_AFTER > 0 trains only the first STOP_AFTER of the STEPS steps (the schedules still span
# STEPS; the recipe: 30 of 80, docs/EXPERIMENTS.md). A rerun then leaves the run where it stopped.
STOP_AFTER=${STOP_AFTER:-30}
pause=()
[ "$STOP_AFTER" -gt 0 ] && pause=(--pause-after "$STOP_AFTER")
logged_steps() {  # the last step in the run's log.csv, 0 without one
  [ -f "$RUN/log.csv" ] && awk -F, 'NR > 1 { s = $1 } END { print s + 0 }' "$RUN/log.csv" || echo 0
}
done_steps=$(logged_steps)
if [ -f "$RUN/student.safetensors" ]; then
  echo "== recipe: $RUN is trained already (rm -rf $RUN to train again)"
elif [ "$STOP_AFTER" -gt 0 ] && [ "$done_steps" -ge "$STOP_AFTER" ] && [ -f "$RUN/checkpoint.safetensors" ]; then
  echo "== recipe: $RUN has its $STOP_AFTER of $STEPS steps already (rm -rf $RUN to train again)"
elif [ -f "$RUN/checkpoint.safetensors" ]; then
  echo "== recipe: resuming $RUN"
  $NECO train --resume "$RUN" --threads "$THREADS" --eval-data "$EVAL_DATA" --quiet "${pause[@]}"
else
  echo "== recipe: NeCo on $BENCH/train/images, $STEPS steps of $BATCH images${pause:+ (the first $STOP_AFTER)}"
  $NECO train --data "$BENCH/train/images" --out "$RUN" --steps "$STEPS" --batch "$BATCH" \
    --global-size 224 --local-size 98 --references "${REFERENCES:-queue}" --lr-backbone "$LR_BACKBONE" --lr-head "$LR_HEAD" \
    --train-last "$TRAIN_LAST" --head-only-steps "$HEAD_ONLY" --seed "$SEED" --checkpoint-every "$EVAL_EVERY" --eval-every "$EVAL_EVERY" \
    --eval-data "$EVAL_DATA" --threads "$THREADS" --quiet "${pause[@]}" ${EXTRA:-}
fi
train_end=$(date +%s)

echo
echo "== recipe: default model (A) against the best student (B) on the validation split"
B="$RUN/best.safetensors"
[ -f "$B" ] || B="$RUN/student.safetensors"
$NECO eval --bench "$EVAL_BENCH" --data "$BENCH" --compare "$B" --threads "$THREADS" --compare-picture "$RUN/compare.png" | tee "$RUN/eval.txt"

field() {  # field TAG MODEL NAME [BENCH_KEY]: NAME=… of the first "TAG model=MODEL …" line of eval.txt
  awk -v t="$1" -v m="model=$2" -v f="$3=" -v b="${4:+bench=$4 }" '$1 == t && $2 == m && (b == "" || index($0, b)) {
    for (i = 1; i <= NF; i++) if (index($i, f) == 1) { print substr($i, length(f) + 1); exit } }' "$RUN/eval.txt"
}
miou() { field EVAL "$1" miou "$2"; }  # miou MODEL BENCH_KEY
gain() {  # B − A in points, or n/a when the protocol did not run
  awk -v a="$(miou A "$1")" -v b="$(miou B "$1")" 'BEGIN { if (a == "" || b == "") { printf "n/a"; exit } d = b - a; printf "%s%.1f", (d >= 0 ? "+" : ""), d }'
}
rankme() { field RANKME "$1" value; }  # RankMe of a model's validation patch features (`neco eval --bench all|rank`), or nothing
if [ -n "$(rankme A)" ]; then
  # The effective rank of the features: a fall means they collapse onto fewer directions, which
  # costs linear-probe mIoU (docs/EXPERIMENTS.md).
  echo "RANKME A=$(rankme A) B=$(rankme B)"
fi
steps=$(logged_steps)
minutes=$(( (train_end - start) / 60 ))
echo "GAIN incontext=$(gain in-context) linear=$(gain linear) cluster=$(gain cluster_K=300) steps=$steps minutes=$minutes"
