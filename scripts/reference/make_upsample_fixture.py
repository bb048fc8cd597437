#!/usr/bin/env python3
"""Fixture for feature-map upsampling: torch bilinear interpolation, align_corners=False, no antialias.

Writes Tests/Fixtures/kernels/upsample.safetensors with `x` (5, 7, 6) = (h, w, D) random features and
`up_{H}x{W}` (H, W, D) for a few output sizes (up- and non-integer scales), computed as
F.interpolate(x.permute(2, 0, 1)[None], size=(H, W), mode="bilinear", align_corners=False).
Run: /root/.cache/neco-ref/bin/python scripts/reference/make_upsample_fixture.py
"""
import torch
import torch.nn.functional as F

import common


def main():
    g = torch.Generator().manual_seed(107)
    x = torch.randn(5, 7, 6, generator=g)
    tensors = {"x": x}
    for h, w in ((70, 98), (11, 13), (5, 7), (32, 17)):
        up = F.interpolate(x.permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=False)
        tensors[f"up_{h}x{w}"] = up[0].permute(1, 2, 0).contiguous()
    common.save_fixture(common.fixture_path("kernels", "upsample.safetensors"), tensors,
                        {"what": "bilinear upsampling of (h, w, D) feature maps, align_corners=False"})


if __name__ == "__main__":
    main()
