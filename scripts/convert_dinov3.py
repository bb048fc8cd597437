#!/usr/bin/env python3
"""Convert a DINOv3 PyTorch checkpoint (.pth / .pt / .bin) to safetensors for libneco.

Usage: convert_dinov3.py IN.pth OUT.safetensors [--float32]

Needs torch and safetensors (e.g. the reference venv of `scripts/setup.sh --reference`).

Accepted inputs:
* Meta's released backbones (`dinov3_vits16_pretrain_lvd1689m-*.pth`, ...): a plain state dict
  with `cls_token`, `storage_tokens`, `mask_token`, `rope_embed.periods`, `blocks.N.*`, `norm.*`.
* Meta training checkpoints: the backbone is taken from `teacher` (else `model`), with its
  `backbone.` prefix removed; the DINO / iBOT heads are dropped.
* timm (`vit_*_patch16_dinov3`) and Hugging Face (`DINOv3ViTModel`, `pytorch_model.bin`) state
  dicts: written as they are (a `model.` or `dinov3_vit.` prefix is removed).

The key names are kept: libneco detects the layout itself. Tensors keep their dtype (libneco reads
F32, F16 and BF16) unless --float32 is given; `rope_embed.periods` always keeps its values, so
libneco can tell Meta's bfloat16-rounded periods apart. The file is written next to OUT and renamed
into place, so a failed run leaves nothing behind.
"""
import argparse
import os
import sys


def backbone_state(obj):
    """The backbone's tensors from whatever the checkpoint holds."""
    import torch

    if isinstance(obj, dict):
        for key in ("teacher", "model", "state_dict", "module"):
            if key in obj and isinstance(obj[key], dict):
                return backbone_state(obj[key])
    if not isinstance(obj, dict) or not obj:
        raise SystemExit("the checkpoint holds no state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in ("backbone.", "model.", "dinov3_vit."):
        inner = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if inner:
            return inner
    return {k: v for k, v in tensors.items() if not k.startswith(("dino_head.", "ibot_head.", "head."))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--float32", action="store_true", help="convert every floating tensor to float32")
    args = ap.parse_args()
    import torch
    from safetensors.torch import save_file

    obj = torch.load(args.src, map_location="cpu", weights_only=True)
    state = backbone_state(obj)
    out = {}
    for k, v in state.items():
        if args.float32 and v.is_floating_point():
            v = v.float()
        out[k] = v.contiguous()
    layout = ("Meta" if "storage_tokens" in out else "Hugging Face" if "embeddings.cls_token" in out
              else "timm" if "reg_token" in out else "unknown")
    if layout == "unknown":
        print("warning: no storage_tokens / reg_token / embeddings.cls_token: is this a DINOv3 backbone?", file=sys.stderr)
    tmp = args.dst + ".tmp"
    save_file(out, tmp, metadata={"source": os.path.basename(args.src)})
    os.replace(tmp, args.dst)
    n = sum(v.numel() for v in out.values())
    print(f"wrote {args.dst}: {len(out)} tensors, {n:,} values, {layout} layout")


if __name__ == "__main__":
    main()
