#!/usr/bin/env python3
"""PyTorch side of `neco train-bench`: one NeCo-style training step of timm ViT-S/14 with 4 registers.

Measured as ../shared/docs/REFERENCE-NUMBERS.md describes the training step: 8 images x 2 views at
224 (16 views), the student runs forward with autograd on the 16 views, the EMA teacher (the student's
weights plus a small perturbation, so that the loss is not zero) runs forward without grad on the
same 16 views, the loss is an MSE between the student's and the teacher's patch
tokens (or, with --head, between their L2-normalised projection-head outputs, NeCo's 384 -> 2048 ->
2048 -> 256 head), then backward, AdamW (decay / no-decay groups) and the EMA update. Augmentation
is excluded. fp32, torch.set_num_threads(N), random weights (same cost as trained ones), one warm-up
step, then the median of the timed steps. Peak RSS is ru_maxrss of this process.

Prints one line:
TORCH_TRAIN views=16 step_s=... views_per_s=... teacher_fwd_s=... student_fwd_s=... backward_s=...
            optimizer_s=... cpu_s=... peak_rss_mib=... trainable=...
(cpu_s: process CPU time of the median step; with one thread it does not depend on other load.)
"""
import argparse
import copy
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
from common import import_timm  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--head", action="store_true")
    ap.add_argument("--last", type=int, default=0, help="train only the last N blocks (0 = everything)")
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    timm = import_timm()
    student = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=args.size).train()
    prefix = student.num_prefix_tokens
    head = None
    if args.head:
        d = student.embed_dim
        head = torch.nn.Sequential(torch.nn.Linear(d, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 2048),
                                   torch.nn.GELU(), torch.nn.Linear(2048, 256))
    teacher = copy.deepcopy(student)
    teacher_head = copy.deepcopy(head) if head is not None else None
    for p in teacher.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        # A teacher equal to the student would make the loss and every gradient zero (and later
        # denormal); perturb it by ~10 % of the weight scale, as libneco's side does.
        for p in teacher.parameters():
            p.add_(torch.rand_like(p) - 0.5, alpha=0.004)
    if teacher_head is not None:
        for p in teacher_head.parameters():
            p.requires_grad_(False)
    if args.last > 0:
        for name, p in student.named_parameters():
            parts = name.split(".")
            p.requires_grad_(parts[0] == "blocks" and int(parts[1]) >= len(student.blocks) - args.last)
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    if head is not None:
        named += [("head." + n, p) for n, p in head.named_parameters()]
    decay = [p for n, p in named if p.dim() >= 2 and not n.endswith(".bias")]
    no_decay = [p for n, p in named if not (p.dim() >= 2 and not n.endswith(".bias"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.04}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-5, foreach=False)
    pairs = list(zip(student.parameters(), teacher.parameters()))
    if head is not None:
        pairs += list(zip(head.parameters(), teacher_head.parameters()))
    trainable = sum(p.numel() for _, p in named)
    n = args.images * args.views
    x = torch.randn(n, 3, args.size, args.size)

    def embed(model, hd, imgs):
        tokens = model.forward_features(imgs)[:, prefix:]
        if hd is None:
            return tokens
        return F.normalize(hd(tokens), dim=-1)

    times = []
    for step in range(args.steps + 1):
        c0 = time.process_time()
        t0 = time.perf_counter()
        with torch.no_grad():
            target = embed(teacher, teacher_head, x)
        t1 = time.perf_counter()
        out = embed(student, head, x)
        loss = F.mse_loss(out, target)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        with torch.no_grad():
            m = 0.9995
            for ps, pt in pairs:
                pt.mul_(m).add_((1 - m) * ps.detach())
        t4 = time.perf_counter()
        if step > 0:
            times.append((t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, time.process_time() - c0))
    times.sort(key=lambda r: r[0])
    med = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"TORCH_TRAIN views={n} step_s={med[0]:.3f} views_per_s={n / med[0]:.3f} teacher_fwd_s={med[1]:.3f} "
          f"student_fwd_s={med[2]:.3f} backward_s={med[3]:.3f} optimizer_s={med[4]:.3f} cpu_s={med[5]:.3f} peak_rss_mib={rss:.0f} "
          f"trainable={trainable}", flush=True)


if __name__ == "__main__":
    main()
