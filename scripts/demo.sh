#!/usr/bin/env bash
# The main job. Sets everything up (idempotent: packages, the default model, sample photos, the
# benchmark, a release build), then on the embedded default model (DINOv2 ViT-S/14):
#   1. dense features of the sample photos and their PCA pictures (out/demo/);
#   2. the NeCo recipe (scripts/recipe.sh): the first 30 steps of an 80-step schedule of post-pretraining
#      on the benchmark's training images, with the in-context evaluation during the run on held-out
#      training images (out/train/: checkpoint, log.csv, eval.csv, curves.png, best.safetensors),
#      then the before/after table of all three protocols and RankMe on the validation split,
#      segmentations (out/train/compare.png) and its RANKME and GAIN lines;
#   3. PCA pictures before and after training (out/train/pca_before.png, pca_after.png).
# Rerunning continues a stopped run and skips a finished one (rm -rf out/train to train again).
# DEMO_STEPS changes how many of the 80 steps run (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product neco
NECO=.build/release/neco
CACHE=${NECO_CACHE:-$HOME/.cache/neco}

$NECO demo --out out/demo

RUN=out/train
echo
# The NeCo recipe (scripts/recipe.sh, docs/EXPERIMENTS.md): the first 30 steps of an 80-step
# schedule, 4 benchmark training images per step (2 global crops of 224 px + 4 local crops of 98
# px, queue references), the projection head alone for the first 20 steps and then the last 4
# blocks too at lr 1e-4, the in-context mIoU every 10 steps on 50 held-out training images, which
# choose the student (curves.png, best.safetensors), then the before/after table on the validation
# split and segmentations. About 7 minutes on 2 cores.
RUN="$RUN" STEPS=80 STOP_AFTER=${DEMO_STEPS:-30} EVAL_BENCH=all scripts/recipe.sh

echo
echo "== PCA of the patch features before and after NeCo"
$NECO pca --image "$CACHE/photos/chelsea.png" --out "$RUN/pca_before.png"
$NECO pca --model "$RUN/best.safetensors" --image "$CACHE/photos/chelsea.png" --out "$RUN/pca_after.png"
echo "pictures: $RUN/curves.png (loss and in-context mIoU), $RUN/compare.png (segmentations), $RUN/pca_before.png, $RUN/pca_after.png"
