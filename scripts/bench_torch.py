#!/usr/bin/env python3
"""PyTorch side of scripts/bench.sh: timm ViT-S/14 with 4 registers (or --variant, e.g.
vit_small_patch16_dinov3), forward_features, fp32.

Measured the way docs/REFERENCE-NUMBERS describes: torch.set_num_threads(N), inference_mode,
random weights (same cost as trained ones), one warm-up, median of the timed repeats, peak RSS from
ru_maxrss. Prints lines `TORCH batch=B img_per_s=... ms_per_batch=... peak_rss_mib=...`.
"""
import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
from common import import_timm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--variant", default="vit_small_patch14_reg4_dinov2")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    timm = import_timm()
    model = timm.create_model(args.variant, pretrained=False, img_size=args.size).eval()
    for b in [int(v) for v in args.batches.split(",")]:
        x = torch.randn(b, 3, args.size, args.size)
        with torch.inference_mode():
            model.forward_features(x)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model.forward_features(x)
                times.append(time.perf_counter() - t0)
        med = sorted(times)[len(times) // 2]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"TORCH batch={b} img_per_s={b / med:.3f} ms_per_batch={med * 1000:.1f} peak_rss_mib={rss:.0f}", flush=True)


if __name__ == "__main__":
    main()
