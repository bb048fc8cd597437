#!/usr/bin/env python3
"""PyTorch side of scripts/bench.sh: timm ViT-S/14 with 4 registers (or --variant, e.g.
vit_small_patch16_dinov3), forward_features, fp32.

Measured the way docs/REFERENCE-NUMBERS describes: torch.set_num_threads(N), inference_mode,
random weights (same cost as trained ones) or, with --weights, a safetensors file of timm keys (the
one scripts/compare.sh gives all three engines), one warm-up, median of the timed repeats, peak RSS
from ru_maxrss. Prints lines `TORCH batch=B img_per_s=... ms_per_batch=... peak_rss_mib=...`.
With --save-weights PATH it only writes the model's (seeded random) weights there and exits.
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
    ap.add_argument("--weights", help="safetensors file with timm keys to load")
    ap.add_argument("--save-weights", help="write seeded random weights (timm keys) here and exit")
    ap.add_argument("--variant", default="vit_small_patch14_reg4_dinov2")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    timm = import_timm()
    torch.manual_seed(0)
    model = timm.create_model(args.variant, pretrained=False, img_size=args.size).eval()
    if args.save_weights:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.save_weights)
        return
    if args.weights:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(args.weights))
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
