#!/usr/bin/env python3
"""Whole NeCo training steps of the official code, for Tests/Fixtures/step/ (README.md, section step/).

The official code is the public repository vpariza/NeCo, read from a checkout at generation time
(never copied into this repository): its `NeCo` Lightning module (`src/neco.py`: `training_step`,
`shared_step`, `update_queue`, `knn_loss`, `compute_knn_perm_mat`, `compute_knn_subloss`,
`configure_optimizers`, `exclude_from_wt_decay`, `optimizer_step`), its DINOv2 ViT with the
projection head (`src/models/vit_v2.py`), its box computation (`NeCoTransforms.calculate_bboxes`
in `src/neco_transforms.py`) and its `cosine_scheduler` (`experiments/utils.py`). Only imports
that the step does not use are stubbed: `pytorch_lightning` (a minimal LightningModule), and
`experiments.utils` (whose module imports faiss, scikit-learn, torchmetrics, ...), into which
the official `cosine_scheduler` source is loaded.

The step runs on a tiny DINOv2 ViT (the official class, 16 wide, 2 blocks, patch 14, a 5x5
position table, LayerScale, 0 or 4 registers) with a 3-layer 24-wide head of 16 outputs, in
float64 so that the reference is free of float32 rounding (the key third of the qkv bias has an
exact zero gradient; in float32 its AdamW update would be rounding noise divided by its own
magnitude). Fixed inputs: the crops (B = 2 images; 2 global 56-px and 0 or 4 local 28-px crops),
the crop rectangles and the boxes the official code derives from them, drop path off, a prefilled
queue (queue mode), and every random permutation the step draws (recorded from `torch.randperm`
and stored, so libneco replays the same draws).

Per case it stores the loss of step 1 and its pair losses, every student gradient of step 1
(backbone and head), the student and teacher weights after step 1 (EMA first, from the pre-update
student, then AdamW), and the losses of steps 1-3 (same crops, fresh draws, queue evolving).

Usage (torch venv, README.md):
  git clone <vpariza/NeCo> /tmp/neco-official   # any checkout of the public repository
  /root/.cache/neco-ref/bin/python scripts/reference/make_step_fixtures.py --neco-src /tmp/neco-official
"""
import argparse
import ast
import math
import os
import subprocess
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

B = 2                 # images per batch
EMBED, DEPTH, HEADS = 16, 2, 2
IMG = 70              # position table 5x5 at patch 14
PATCH = 14
GLOBAL, LOCAL = 56, 28
HEAD_HIDDEN, HEAD_OUT, HEAD_LAYERS = 24, 16, 3
QUEUE = 256
STEPS = 3
TOTAL_STEPS = 10      # the schedules' length (num_samples = B * TOTAL_STEPS, one epoch)
HYPER = dict(lr_backbone=1e-5, lr_heads=1e-4, final_lr=0.0, weight_decay=0.04, weight_decay_end=0.5,
             momentum_teacher=0.9, momentum_teacher_end=1.0)

CASES = [
    # name,               references, network,    relaxation,   locals, registers, steepness
    ("queue_bitonic_cauchy_local_reg4", "queue", "bitonic", "cauchy", 4, 4, 100.0),
    ("batch_oddeven_cauchy_global_reg0", "batch", "odd_even", "cauchy", 0, 0, 100.0),
    ("batch_bitonic_reciprocal_local_reg0", "batch", "bitonic", "reciprocal", 4, 0, 100.0),
    ("queue_oddeven_reciprocal_global_reg4", "queue", "odd_even", "reciprocal", 0, 4, 100.0),
]


# ---------------------------------------------------------------------------------------------
# Importing the official code with the unused heavy imports stubbed
# ---------------------------------------------------------------------------------------------

def install_stubs(src):
    import torch
    from torch import nn

    pl = types.ModuleType("pytorch_lightning")

    class LightningModule(nn.Module):
        """The parts of Lightning's module that NeCo's step touches."""

        def save_hyperparameters(self, *args, **kwargs):
            pass

        def log(self, *args, **kwargs):
            pass

        def print(self, *args, **kwargs):
            print(*args)

        @property
        def device(self):
            return torch.device("cpu")

        def optimizers(self):
            return self._optimizer

    pl.LightningModule = LightningModule
    core = types.ModuleType("pytorch_lightning.core")
    optim_mod = types.ModuleType("pytorch_lightning.core.optimizer")

    class LightningOptimizer:
        """Lightning wraps the optimizer; `step(closure)` calls the torch optimizer's step."""

        def __init__(self, optimizer):
            self.optimizer = optimizer

        @staticmethod
        def _to_lightning_optimizer(optimizer, strategy):
            return LightningOptimizer(optimizer)

        def step(self, closure=None):
            return self.optimizer.step(closure=closure)

    optim_mod.LightningOptimizer = LightningOptimizer
    core.optimizer = optim_mod
    pl.core = core
    sys.modules["pytorch_lightning"] = pl
    sys.modules["pytorch_lightning.core"] = core
    sys.modules["pytorch_lightning.core.optimizer"] = optim_mod

    # experiments.utils: only `cosine_scheduler` is used by the step; load its official source.
    utils_path = os.path.join(src, "experiments", "utils.py")
    tree = ast.parse(open(utils_path).read())
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "cosine_scheduler"]
    assert len(fn) == 1, "experiments/utils.py: cosine_scheduler not found"
    utils = types.ModuleType("experiments.utils")
    utils.np = np
    exec(compile(ast.Module(body=fn, type_ignores=[]), utils_path, "exec"), utils.__dict__)

    class PredsmIoUKmeans:  # validation only
        def __init__(self, *args, **kwargs):
            pass

    def process_attentions(*args, **kwargs):  # loss_mask 'fg'/'bg' only
        raise RuntimeError("not used with loss_mask 'all'")

    utils.PredsmIoUKmeans = PredsmIoUKmeans
    utils.process_attentions = process_attentions
    experiments = types.ModuleType("experiments")
    experiments.__path__ = []
    experiments.utils = utils
    sys.modules["experiments"] = experiments
    sys.modules["experiments.utils"] = utils
    sys.path.insert(0, src)


def official_commit(src):
    try:
        return subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return os.environ.get("NECO_OFFICIAL_COMMIT", "unknown")


# ---------------------------------------------------------------------------------------------
# Recording torch.randperm
# ---------------------------------------------------------------------------------------------

class DrawRecorder:
    """Wraps torch.randperm: every call draws from a seeded generator and is recorded, so that the
    permutations can be stored and replayed by libneco. The official code only uses a prefix of
    some draws (`randperm(n)[:k]`); the whole permutation is stored, libneco reads the prefix."""

    def __init__(self, torch, seed):
        self.torch = torch
        self.real = torch.randperm
        self.gen = torch.Generator().manual_seed(seed)
        self.draws = []

    def __enter__(self):
        def randperm(n, *args, **kwargs):
            kwargs.pop("generator", None)
            kwargs.pop("device", None)
            p = self.real(n, generator=self.gen)
            self.draws.append(p.clone())
            return p

        self.torch.randperm = randperm
        return self

    def __exit__(self, *exc):
        self.torch.randperm = self.real


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def crop_rects(n_local, rng):
    """Integer crop rectangles (x1, y1, x2, y2) in a 120x100 image: two global crops and n_local
    local crops, each overlapping both global crops (the official boxes assert it)."""
    W, H = 120, 100
    out = []
    for b in range(B):
        while True:
            rects = []
            for i in range(2 + n_local):
                side = rng.integers(60, 90) if i < 2 else rng.integers(20, 40)
                w = int(side)
                h = int(side * rng.uniform(0.8, 1.2))
                h = min(h, H)
                x = int(rng.integers(0, W - w + 1))
                y = int(rng.integers(0, H - h + 1))
                rects.append((x, y, x + w, y + h))
            ok = all(min(r[2], g[2]) - max(r[0], g[0]) > 0 and min(r[3], g[3]) - max(r[1], g[1]) > 0
                     for g in rects[:2] for r in rects)
            if ok:
                out.append(rects)
                break
    return np.array(out, dtype=np.float32)  # (B, nC, 4)


def crop_pixels(torch, image, rect, size):
    """The crop `rect` of image (3, H, W) resized to size x size (bilinear), as a float tensor."""
    x1, y1, x2, y2 = [int(v) for v in rect]
    region = image[:, y1:y2, x1:x2][None]
    return torch.nn.functional.interpolate(region, size=(size, size), mode="bilinear", align_corners=False)[0]


def make_inputs(torch, n_local, seed):
    rng = np.random.default_rng(seed)
    rects = crop_rects(n_local, rng)
    yy, xx = np.mgrid[0:100, 0:120].astype(np.float64)
    images = []
    for b in range(B):
        chans = []
        for c in range(3):
            f = np.zeros_like(xx)
            for _ in range(5):
                kx, ky, ph = rng.uniform(-0.15, 0.15), rng.uniform(-0.15, 0.15), rng.uniform(0, 2 * math.pi)
                f += rng.uniform(0.3, 1.0) * np.sin(kx * xx + ky * yy + ph)
            chans.append(f + 0.2 * rng.standard_normal(f.shape))
        images.append(torch.tensor(np.stack(chans), dtype=torch.float64))
    n_crops = 2 + n_local
    crops = []
    for v in range(n_crops):
        size = GLOBAL if v < 2 else LOCAL
        crops.append(torch.stack([crop_pixels(torch, images[b], rects[b, v], size) for b in range(B)]).float().double())
    return rects, crops


# ---------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------

def build_neco(torch, references, network, relaxation, n_local, registers, steepness):
    from functools import partial
    import src.neco as neco_mod
    import src.models.vit_v2 as vit_v2
    from src.layers import MemEffAttention, NestedTensorBlock as Block
    from diffsort import DiffSortNet

    def tiny(patch_size=16, num_register_tokens=0, drop_path_rate=0.0, **kwargs):
        # The official DinoVisionTransformer at a tiny size; drop path off (the official student
        # is built with drop_path_rate=0.1: the fixture fixes it to 0).
        return vit_v2.DinoVisionTransformer(img_size=IMG, patch_size=patch_size, init_values=1.0, embed_dim=EMBED,
                                            depth=DEPTH, num_heads=HEADS, mlp_ratio=4,
                                            block_fn=partial(Block, attn_class=MemEffAttention),
                                            num_register_tokens=num_register_tokens, drop_path_rate=0.0, **kwargs)

    neco_mod.vit_small_v2 = tiny
    # The official code builds DiffSortNet with the library's default relaxation (Cauchy); the
    # other relaxation cases pass `distribution` through.
    neco_mod.DiffSortNet = partial(DiffSortNet, distribution=relaxation)
    nmb = [2, n_local] if n_local > 0 else [2]
    model = neco_mod.NeCo(gpus=1, num_samples=B * TOTAL_STEPS, batch_size=B, max_epochs=1,
                          lr_heads=HYPER["lr_heads"], lr_backbone=HYPER["lr_backbone"], final_lr=HYPER["final_lr"],
                          weight_decay_end=HYPER["weight_decay_end"], weight_decay=HYPER["weight_decay"],
                          projection_hidden_dim=HEAD_HIDDEN, projection_feat_dim=HEAD_OUT,
                          n_layers_projection_head=HEAD_LAYERS, crops_for_assign=[0, 1], nmb_crops=nmb,
                          num_classes=21, val_iters=1, num_clusters_kmeans=[21], use_teacher=True, loss_mask="all",
                          queue_length=QUEUE if references == "queue" else 0,
                          momentum_teacher=HYPER["momentum_teacher"], momentum_teacher_end=HYPER["momentum_teacher_end"],
                          exclude_norm_bias=True, optimizer="adamw", patch_size=PATCH, roi_align_kernel_size=7,
                          arch="vit-small", student_steepness=steepness, teacher_steepness=steepness, arch_version="v2",
                          grad_norm_clipping=None, num_register_tokens=registers, sort_net=network,
                          trainable_blocks=None, is_queue_usable=(references == "queue"), sim_dist="cosine")
    return model, nmb


def run_case(torch, name, references, network, relaxation, n_local, registers, steepness, seed, src):
    from src.neco_transforms import NeCoTransforms

    model, nmb = build_neco(torch, references, network, relaxation, n_local, registers, steepness)
    # Weights: the student (backbone and head) and the teacher's head are random; the teacher's
    # backbone starts as the student's (NeCo loads the same pretrained weights into both).
    common.randomize_(model.model, seed)
    common.randomize_(model.teacher, seed + 1)
    with torch.no_grad():
        for (ks, ps), (kt, pt) in zip(model.model.named_parameters(), model.teacher.named_parameters()):
            assert ks == kt
            if not ks.startswith("projection_head"):
                pt.copy_(ps)
    model.double()
    model.train()
    model.teacher.train()

    # Inputs and the official boxes.
    rects, crops = make_inputs(torch, n_local, seed + 2)
    size_crops = [GLOBAL, LOCAL] if n_local > 0 else [GLOBAL]
    tf = types.SimpleNamespace(nmb_crops=nmb, size_crops=size_crops)
    gcs, alls = [], []
    for b in range(B):
        gc, al = NeCoTransforms.calculate_bboxes(tf, torch.tensor(rects[b]))
        gcs.append(gc)
        alls.append(al)
    bboxes = {"gc": torch.stack(gcs).double(), "all": torch.stack(alls).double()}
    batch = ([c.clone() for c in crops], bboxes)
    weights = {"student." + k: p.detach().float() for k, p in model.model.named_parameters() if k != "mask_token"}
    weights.update({"teacher." + k: p.detach().float() for k, p in model.teacher.named_parameters()
                    if k.startswith("projection_head")})

    # A prefilled queue (unit rows, float32 values), then Lightning's per-epoch setup (which keeps
    # an existing queue: the official code would otherwise allocate it on the GPU) and the optimizer.
    qgen = torch.Generator().manual_seed(seed + 3)
    queue0 = None
    if references == "queue":
        q = torch.randn(2, QUEUE, HEAD_OUT, generator=qgen, dtype=torch.float64)
        model.queue = torch.nn.functional.normalize(q, dim=-1).float().double()
        model.entries_in_queue = QUEUE
        queue0 = model.queue.clone()
    model.on_train_epoch_start()
    optimizers, schedulers = model.configure_optimizers()
    optimizer = optimizers[0]
    scheduler = schedulers[0]["scheduler"]
    model._optimizer = optimizer
    trainer = types.SimpleNamespace(global_step=0, strategy=None)
    model.trainer = trainer

    tensors = {}
    meta = {}
    losses = []
    before_s = {k: p.detach().clone() for k, p in model.model.named_parameters()}
    before_t = {k: p.detach().clone() for k, p in model.teacher.named_parameters()}
    with DrawRecorder(torch, seed + 4) as rec:
        for step in range(STEPS):
            first = len(rec.draws)
            record = {}

            def closure():
                optimizer.zero_grad()
                loss = model.training_step(batch, step)
                loss.backward()
                record["loss"] = loss.item()
                if step == 0:
                    record["grads"] = {k: p.grad.detach().clone() for k, p in model.model.named_parameters()
                                       if p.grad is not None}
                return loss

            model.optimizer_step(0, step, optimizer, closure)
            scheduler.step()
            trainer.global_step += 1
            losses.append(record["loss"])
            for i, p in enumerate(rec.draws[first:]):
                tensors[f"draw_{step}_{i}"] = p.numpy().astype(np.float32)
            meta[f"draws_{step}"] = len(rec.draws) - first
            if step == 0:
                for k, g in record["grads"].items():
                    tensors["grad." + k] = g.float()
                # The weights after the update, and the update itself (after − before, computed in
                # float64): an AdamW step is about lr, so the update shows what the weights hide.
                for prefix, net, before in (("student", model.model, before_s), ("teacher", model.teacher, before_t)):
                    for k, p in net.named_parameters():
                        if k != "mask_token":
                            tensors[f"{prefix}_after." + k] = p.detach().float()
                            tensors[f"{prefix}_update." + k] = (p.detach() - before[k]).float()
                meta["lr_step0"] = [g["lr"] for g in optimizer.param_groups]
                meta["wd_step0"] = [g["weight_decay"] for g in optimizer.param_groups]
                meta["momentum_step0"] = float(model.momentum_schedule[0])
    tensors["losses_f64"] = np.array(losses, dtype=np.float64)

    meta.update({
        "case": name, "references": references, "network": network, "relaxation": relaxation,
        "local_crops": n_local, "registers": registers, "steepness": steepness, "batch": B,
        "global_size": GLOBAL, "local_size": LOCAL, "queue_length": QUEUE if references == "queue" else 0,
        "total_steps": TOTAL_STEPS, "steps": STEPS, "hyper": HYPER, "dtype": "float64",
    })
    tensors.update(weights)
    return tensors, meta, rects, crops, bboxes, queue0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--neco-src", default=os.environ.get("NECO_OFFICIAL_SRC", "/tmp/neco-official"),
                    help="a checkout of the public vpariza/NeCo repository")
    args = ap.parse_args()
    torch = common.setup_torch()
    torch.set_default_dtype(torch.float32)
    install_stubs(args.neco_src)
    commit = official_commit(args.neco_src)
    out_dir = common.fixture_path("step")
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for idx, (name, refs, net, relax, n_local, regs, steep) in enumerate(CASES):
        seed = 7000 + 100 * regs  # the same weights for every case with the same register count
        tensors, meta, rects, crops, bboxes, queue0 = run_case(torch, name, refs, net, relax, n_local, regs, steep,
                                                               seed, args.neco_src)
        tensors["crop_rects"] = rects
        for v, c in enumerate(crops):
            tensors[f"crop_{v}"] = c.float()
        tensors["gc_boxes"] = bboxes["gc"].float()
        tensors["all_boxes"] = bboxes["all"].float()
        if queue0 is not None:
            tensors["queue"] = queue0.float()
        meta["source"] = f"vpariza/NeCo {commit}"
        meta["torch"] = torch.__version__
        import diffsort  # noqa: F401
        meta["diffsort"] = "0.2.0"
        total += common.save_fixture(os.path.join(out_dir, name + ".safetensors"), tensors, meta)
        print(f"  {name}: losses {tensors['losses_f64'].tolist()}")
    print(f"total {total:,} bytes")


if __name__ == "__main__":
    main()
