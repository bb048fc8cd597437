#!/usr/bin/env bash
# make_corpus.sh OUT_DIR: seed corpora for the fuzz targets, built from the test fixtures.
#   OUT_DIR/image_decode     every JPEG and PNG of Tests/Fixtures/image
#   OUT_DIR/model_load       the tiny ViT weights and the reference safetensors file
#   OUT_DIR/header_parse     the JSON headers of those files (length prefix removed)
#   OUT_DIR/checkpoint_step  one `key=value` metadata override per line (empty = the real checkpoint)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$1
fx=$root/Tests/Fixtures
mkdir -p "$out"/{image_decode,model_load,header_parse,checkpoint_step}
cp "$fx"/image/*.jpg "$fx"/image/*.png "$out/image_decode/"
cp "$fx"/vit/*.weights.safetensors "$fx"/safetensors/*.safetensors "$out/model_load/"
for f in "$fx"/vit/*.weights.safetensors "$fx"/safetensors/*.safetensors "$fx"/train/tiny.safetensors; do
  [ -f "$f" ] || continue
  n=$(od -An -t u8 -N8 "$f" | tr -d ' ')
  dd if="$f" of="$out/header_parse/$(basename "$f" .safetensors).json" iflag=skip_bytes,count_bytes skip=8 count="$n" status=none
done
cp "$fx"/vit/tiny_reg4.weights.safetensors "$out/header_parse/whole_file.safetensors"
cs=$out/checkpoint_step
: > "$cs/pristine"
printf 'step=1\n' > "$cs/step"
printf 'adamw_step=1\n' > "$cs/adamw_step"
printf 'rng_state=1,2,3,4\n' > "$cs/rng_state"
printf 'neco.loader_epoch=0\nneco.loader_position=2\n' > "$cs/loader"
printf 'neco.loader_skipped=0\n' > "$cs/skipped"
printf 'neco.reference_rng=a,b,c,d\n' > "$cs/reference_rng"
printf 'neco.queue_filled=2,2\n' > "$cs/queue_filled"
printf 'neco.image_count=4\n' > "$cs/image_count"
printf 'version=1\n' > "$cs/version"
printf 'extra_tensors=neco.reference_queue\n' > "$cs/extra_tensors"
echo "seed corpora in $out: $(for d in "$out"/*/; do printf '%s %s  ' "$(basename "$d")" "$(ls "$d" | wc -l)"; done)"
