#!/usr/bin/env bash
# The main job. Sets everything up (idempotent: packages, the default model, sample photos, the
# benchmark, a release build), then on the embedded default model (DINOv2 ViT-S/14):
#   1. dense features of the sample photos and their PCA pictures (out/demo/);
#   2. a shortened NeCo recipe (scripts/recipe.sh): post-pretraining on the benchmark's training
#      images with the in-context evaluation during the run on held-out training images (out/train/: checkpoint, log.csv,
#      eval.csv, curves.png, best.safetensors), then the before/after in-context table and
#      segmentations (out/train/compare.png) and its GAIN line;
#   3. PCA pictures before and after training (out/train/pca_before.png, pca_after.png).
# Rerunning continues a stopped run and skips a finished one (rm -rf out/train to train again).
# DEMO_STEPS changes the number of steps.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product neco
NECO=.build/release/neco
CACHE=${NECO_CACHE:-$HOME/.cache/neco}

$NECO demo --out out/demo

RUN=out/train
echo
# A shortened NeCo recipe (scripts/recipe.sh, docs/EXPERIMENTS.md) at the gentler learning rates of
# its first version (5e-5 / 5e-4), which suit a 24-step schedule: 24 steps of 4 benchmark training
# images (2 global crops of 224 px + 4 local crops of 98 px, queue references), the in-context
# mIoU during the run on 50 held-out training images, which choose the student (curves.png,
# best.safetensors), then the before/after table on the validation split and segmentations.
# About 10 minutes on 2 cores.
RUN="$RUN" STEPS=${DEMO_STEPS:-24} EVAL_EVERY=12 LR_BACKBONE=5e-5 LR_HEAD=5e-4 HEAD_ONLY=0 EVAL_BENCH=incontext scripts/recipe.sh

echo
echo "== PCA of the patch features before and after NeCo"
$NECO pca --image "$CACHE/photos/chelsea.png" --out "$RUN/pca_before.png"
$NECO pca --model "$RUN/best.safetensors" --image "$CACHE/photos/chelsea.png" --out "$RUN/pca_after.png"
echo "pictures: $RUN/curves.png (loss and in-context mIoU), $RUN/compare.png (segmentations), $RUN/pca_before.png, $RUN/pca_after.png"
