#!/usr/bin/env python3
"""PyTorch references for libneco's training core (Tests/Fixtures/train/).

Writes three files (see README.md, section train/):

* tiny.safetensors: a tiny DINOv2-style ViT with 4 registers and a 3-layer projection head,
  explicit per-sample stochastic-depth scales (classic drop path in block 1, DINOv2's subset path
  in block 2), an MSE loss between the L2-normalised head outputs and fixed targets. Stores the
  weights, inputs, the loss, the gradient of every parameter and of the input images.
* tiny_trajectory.safetensors: 10 AdamW steps from the same weights with the NeCo schedules
  (cosine lr with warmup, weight decay 0.04 -> 0.5, EMA momentum), EMA teacher with its own head,
  gradient clipping, and stochastic depth drawn with a Python port of libneco's NecoRNG
  (xoshiro256**), so the masks equal the Swift ones bit for bit. Stores the losses, the schedules,
  the masks and the final weights.
* vits14_reg4_formula_grads.safetensors: full-size timm ViT-S/14 with 4 registers (formula
  weights, README "vits14_reg4_formula"), 112x112, batch 2, MSE of the patch tokens against a
  formula target; gradients of the first and last block (vectors in full, matrices at fixed
  sampled indices), of the embeddings (sampled) and of the input (sampled).

Run with the torch venv: /root/.cache/neco-ref/bin/python scripts/reference/make_train_fixtures.py
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# libneco's NecoRNG (Sources/NecoCore/Random.swift), bit for bit
# ---------------------------------------------------------------------------------------------

class NecoRNG:
    def __init__(self, seed, stream=0):
        sm = (seed ^ ((stream * 0x9E3779B97F4A7C15) & MASK64)) & MASK64
        state = []
        for _ in range(4):
            sm = (sm + 0x9E3779B97F4A7C15) & MASK64
            z = sm
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            state.append(z ^ (z >> 31))
        if state == [0, 0, 0, 0]:
            state[0] = 1
        self.s = state

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK64

    def next(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def uniform_float(self):
        return (self.next() >> 40) / float(1 << 24)  # exact, equals Swift's Float

    def bounded(self, n):
        limit = MASK64 - ((MASK64 % n) + 1) % n
        while True:
            x = self.next()
            if x <= limit:
                return x % n

    def permutation(self, n):
        a = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.bounded(i + 1)
            a[i], a[j] = a[j], a[i]
        return a


def f32(x):
    return float(np.float32(x))


def drop_path_rates(torch, rate, depth):
    return [float(v) for v in torch.linspace(0, rate, depth)]  # float32 linspace, as DINOv2


def sample_scales(rng, rates, batch):
    """Stochastic-depth scales (depth, 2, B) drawn as libneco's StochasticDepth.sample."""
    out = np.ones((len(rates), 2, batch), dtype=np.float32)
    for i, p in enumerate(rates):
        for branch in range(2):
            if p > 0.1:  # subset path
                k = max(int(batch * (1 - p)), 1)
                perm = rng.permutation(batch)
                out[i, branch] = 0
                out[i, branch, perm[:k]] = f32(batch / k)
            elif p > 0:
                keep = f32(1 - p)
                scale = f32(1 / (1 - p))
                for b in range(batch):
                    out[i, branch, b] = scale if rng.uniform_float() < keep else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# Explicit DINOv2 forward with canonical (Meta) parameter names
# ---------------------------------------------------------------------------------------------

TINY = dict(patch=14, dim=32, depth=3, heads=4, mlp=128, grid=5, registers=4, rule="neco",
            head_hidden=48, head_out=16, head_layers=3)


def param_shapes(cfg):
    d, g = cfg["dim"], cfg["grid"]
    shapes = {"cls_token": (1, 1, d), "pos_embed": (1, 1 + g * g, d), "register_tokens": (1, cfg["registers"], d),
              "patch_embed.proj.weight": (d, 3, cfg["patch"], cfg["patch"]), "patch_embed.proj.bias": (d,)}
    for i in range(cfg["depth"]):
        p = f"blocks.{i}."
        shapes.update({p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "attn.qkv.weight": (3 * d, d),
                       p + "attn.qkv.bias": (3 * d,), p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
                       p + "ls1.gamma": (d,), p + "norm2.weight": (d,), p + "norm2.bias": (d,),
                       p + "mlp.fc1.weight": (cfg["mlp"], d), p + "mlp.fc1.bias": (cfg["mlp"],),
                       p + "mlp.fc2.weight": (d, cfg["mlp"]), p + "mlp.fc2.bias": (d,), p + "ls2.gamma": (d,)})
    shapes.update({"norm.weight": (d,), "norm.bias": (d,)})
    return shapes


def head_shapes(cfg):
    out = {}
    for l in range(cfg["head_layers"]):
        i = cfg["dim"] if l == 0 else cfg["head_hidden"]
        o = cfg["head_out"] if l == cfg["head_layers"] - 1 else cfg["head_hidden"]
        out[f"projection_head.{2 * l}.weight"] = (o, i)
        out[f"projection_head.{2 * l}.bias"] = (o,)
    return out


def random_params(torch, shapes, seed):
    """common.randomize_'s recipe on a dict of named shapes."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        r = torch.randn(shape, generator=gen, dtype=torch.float64)
        if name.endswith(".gamma"):
            v = 0.5 + 0.3 * r
        elif name.endswith(".bias"):
            v = 0.1 * r
        elif name.split(".")[-2:-1] and "norm" in name.split(".")[-2] and name.endswith(".weight"):
            v = 1.0 + 0.2 * r
        elif len(shape) >= 2 and name.endswith(".weight"):
            v = r / math.sqrt(int(np.prod(shape[1:])))
        else:
            v = 0.5 * r
        out[name] = v.float()
    return out


def vit_forward(torch, P, x, cfg, scales=None):
    """Final-norm tokens (B, T, D). scales: (depth, 2, B) per-sample branch scales or None.
    A branch whose block rate routes it to the subset path (scales given with exactly one
    non-zero value, marked by `subset_blocks`) runs DINOv2's drop_add_residual_stochastic_depth."""
    F = torch.nn.functional
    b = x.shape[0]
    d, heads = cfg["dim"], cfg["heads"]
    e = d // heads
    feat = F.conv2d(x, P["patch_embed.proj.weight"], P["patch_embed.proj.bias"], stride=cfg["patch"])
    h, w = feat.shape[-2:]
    patches = feat.flatten(2).transpose(1, 2)
    g = cfg["grid"]
    pos = P["pos_embed"]
    patch_pos = common.resample_pos(pos[:, 1:], (g, g), (h, w), cfg["rule"])
    tokens = torch.cat([P["cls_token"].expand(b, -1, -1) + pos[:, :1], patches + patch_pos], dim=1)
    tokens = torch.cat([tokens[:, :1], P["register_tokens"].expand(b, -1, -1), tokens[:, 1:]], dim=1)

    def attn(pre, y):
        bb, t, _ = y.shape
        qkv = F.linear(y, P[pre + "attn.qkv.weight"], P[pre + "attn.qkv.bias"]).reshape(bb, t, 3, heads, e)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * e ** -0.5).softmax(dim=-1)
        o = (a @ v).transpose(1, 2).reshape(bb, t, d)
        return F.linear(o, P[pre + "attn.proj.weight"], P[pre + "attn.proj.bias"])

    def mlp(pre, y):
        hdn = F.gelu(F.linear(y, P[pre + "mlp.fc1.weight"], P[pre + "mlp.fc1.bias"]))
        return F.linear(hdn, P[pre + "mlp.fc2.weight"], P[pre + "mlp.fc2.bias"])

    x = tokens
    for i in range(cfg["depth"]):
        pre = f"blocks.{i}."
        branches = [
            lambda z: P[pre + "ls1.gamma"] * attn(pre, F.layer_norm(z, (d,), P[pre + "norm1.weight"], P[pre + "norm1.bias"], 1e-6)),
            lambda z: P[pre + "ls2.gamma"] * mlp(pre, F.layer_norm(z, (d,), P[pre + "norm2.weight"], P[pre + "norm2.bias"], 1e-6)),
        ]
        for j, fn in enumerate(branches):
            if scales is None:
                x = x + fn(x)
                continue
            s = torch.from_numpy(np.ascontiguousarray(scales[i, j])).to(x.dtype)
            if i in cfg.get("subset_blocks", ()):
                # DINOv2 drop_add_residual_stochastic_depth: the branch runs on the kept subset only.
                kept = torch.nonzero(s).flatten()
                alpha = float(s[kept[0]])
                res = fn(x[kept])
                x = torch.index_add(x.flatten(1), 0, kept, res.flatten(1).to(x.dtype), alpha=alpha).view_as(x)
            else:
                x = x + fn(x) * s[:, None, None]
    return F.layer_norm(x, (d,), P["norm.weight"], P["norm.bias"], 1e-6)


def head_forward(torch, H, prefix, z, layers):
    F = torch.nn.functional
    for l in range(layers):
        z = F.linear(z, H[f"{prefix}projection_head.{2 * l}.weight"], H[f"{prefix}projection_head.{2 * l}.bias"])
        if l < layers - 1:
            z = F.gelu(z)
    return F.normalize(z, dim=-1)


def patch_tokens(cfg, tokens):
    return tokens[:, 1 + cfg["registers"]:]


def formula_images(shape, step, kind):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    v = np.sin(0.37 * i + step) if kind == "a" else np.cos(0.11 * i - step)
    return v.reshape(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# tiny.safetensors
# ---------------------------------------------------------------------------------------------

def make_tiny(torch):
    cfg = dict(TINY, subset_blocks=(2,))
    shapes = param_shapes(cfg)
    P0 = random_params(torch, shapes, seed=500)
    H0 = random_params(torch, head_shapes(cfg), seed=501)
    TH0 = {"teacher." + k: v for k, v in random_params(torch, head_shapes(cfg), seed=502).items()}
    gen = torch.Generator().manual_seed(503)
    x = torch.randn((2, 3, 56, 70), generator=gen)
    n_patches = 4 * 5
    target = torch.nn.functional.normalize(torch.randn((2, n_patches, cfg["head_out"]), generator=gen), dim=-1)
    # Block 0: no drop path; block 1 (classic): sample 0's attention dropped, MLP kept x1/(1-p);
    # block 2 (subset): one of two samples kept per branch, x2.
    p1 = float(torch.linspace(0, 0.1, 3)[1])
    keep = f32(1 / (1 - p1))
    scales = np.ones((3, 2, 2), dtype=np.float32)
    scales[1, 0] = [0, keep]
    scales[1, 1] = [keep, keep]
    scales[2, 0] = [2, 0]
    scales[2, 1] = [0, 2]

    def run(dtype):
        P = {k: v.to(dtype).clone().requires_grad_(True) for k, v in P0.items()}
        H = {k: v.to(dtype).clone().requires_grad_(True) for k, v in H0.items()}
        xi = x.to(dtype).clone().requires_grad_(True)
        tokens = vit_forward(torch, P, xi, cfg, scales)
        z = head_forward(torch, H, "", patch_tokens(cfg, tokens), cfg["head_layers"])
        loss = torch.nn.functional.mse_loss(z, target.to(dtype))
        loss.backward()
        return loss, z, P, H, xi

    loss, z, P, H, xi = run(torch.float32)
    loss64, _, P64, H64, xi64 = run(torch.float64)
    worst = 0.0
    for k in P:
        g32, g64 = P[k].grad.double(), P64[k].grad
        worst = max(worst, float((g32 - g64).abs().max() / g64.abs().max().clamp_min(1e-30)))
    for k in H:
        g32, g64 = H[k].grad.double(), H64[k].grad
        worst = max(worst, float((g32 - g64).abs().max() / g64.abs().max().clamp_min(1e-30)))
    print(f"  tiny: loss {float(loss.detach()):.8f} (f64 {float(loss64.detach()):.8f}); fp32 vs fp64 gradients: "
          f"max |diff| / max |g| per tensor = {worst:.2e}")
    tensors = {}
    tensors.update(P0)
    tensors.update(H0)
    tensors.update(TH0)
    tensors.update({"images": x, "target": target, "branch_scales": scales, "loss": loss.detach().reshape(1),
                    "out": z.detach(), "grad.images": xi.grad})
    for k in P:
        tensors["grad." + k] = P[k].grad
    for k in H:
        tensors["grad." + k] = H[k].grad
    meta_cfg = {k: v for k, v in cfg.items() if k != "subset_blocks"}
    common.save_fixture(common.fixture_path("train", "tiny.safetensors"), tensors,
                        {"config": meta_cfg, "loss_fn": "mse_loss(normalize(head(patch tokens)), target)",
                         "fp32_vs_fp64_grad_rel": f"{worst:.2e}", "torch": torch.__version__})
    return cfg, P0, H0, TH0


# ---------------------------------------------------------------------------------------------
# tiny_trajectory.safetensors
# ---------------------------------------------------------------------------------------------

TRAJ = dict(seed=1234, steps=10, warmup=2, lr_backbone=2e-3, lr_head=5e-3, final_lr=0.0, wd_start=0.04, wd_end=0.5,
            m_start=0.9, m_end=1.0, clip=0.5, drop_path=0.1)


def cosine(start, end, total, step, warmup=0, warmup_start=0.0):
    """libneco CosineSchedule (= NeCo / DINO cosine_scheduler)."""
    if step < warmup:
        return float(np.linspace(warmup_start, start, warmup)[step])
    span, t = total - warmup, step - warmup
    if span <= 0 or t >= span:
        return end
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * t / span))


def make_trajectory(torch, cfg, P0, H0, TH0):
    F = torch.nn.functional
    T = TRAJ["steps"]
    cfg = dict(cfg)
    rates = drop_path_rates(torch, TRAJ["drop_path"], cfg["depth"])
    cfg["subset_blocks"] = tuple(i for i, p in enumerate(rates) if p > 0.1)
    P = {k: v.clone().requires_grad_(True) for k, v in P0.items()}
    H = {k: v.clone().requires_grad_(True) for k, v in H0.items()}
    teacher = {k: v.clone() for k, v in P0.items()}
    teacher_head = {k[len("teacher."):]: v.clone() for k, v in TH0.items()}
    gen = torch.Generator().manual_seed(504)
    target_b = F.normalize(torch.randn((2 * 3 * 3, cfg["head_out"]), generator=gen), dim=-1).reshape(2, 9, -1)

    def decays(name, t):
        return t.dim() >= 2 and not name.endswith(".bias")

    groups = [
        {"params": [P[k] for k in P if decays(k, P[k])], "lr": 0.0, "weight_decay": 0.0},
        {"params": [P[k] for k in P if not decays(k, P[k])], "lr": 0.0, "weight_decay": 0.0},
        {"params": [H[k] for k in H if decays(k, H[k])], "lr": 0.0, "weight_decay": 0.0},
        {"params": [H[k] for k in H if not decays(k, H[k])], "lr": 0.0, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    rng = NecoRNG(TRAJ["seed"], stream=1)
    losses, sched, masks = [], [], []
    for t in range(T):
        lr_b = cosine(TRAJ["lr_backbone"], TRAJ["final_lr"], T, t, TRAJ["warmup"])
        lr_h = cosine(TRAJ["lr_head"], TRAJ["final_lr"], T, t, TRAJ["warmup"])
        wd = cosine(TRAJ["wd_start"], TRAJ["wd_end"], T, t)
        m = cosine(TRAJ["m_start"], TRAJ["m_end"], T, t)
        sched.append([lr_b, lr_h, wd, m])
        a = torch.from_numpy(formula_images((2, 3, 56, 70), t, "a"))
        b = torch.from_numpy(formula_images((2, 3, 42, 42), t, "b"))
        with torch.no_grad():
            ta = head_forward(torch, teacher_head, "", patch_tokens(cfg, vit_forward(torch, teacher, a, cfg)), cfg["head_layers"])
        sa = sample_scales(rng, rates, 2)
        sb = sample_scales(rng, rates, 2)
        masks.append(np.stack([sa, sb]))
        za = head_forward(torch, H, "", patch_tokens(cfg, vit_forward(torch, P, a, cfg, sa)), cfg["head_layers"])
        zb = head_forward(torch, H, "", patch_tokens(cfg, vit_forward(torch, P, b, cfg, sb)), cfg["head_layers"])
        loss = F.mse_loss(za, ta) + 0.5 * F.mse_loss(zb, target_b)
        losses.append(float(loss.detach()))
        # EMA of the pre-update student (NeCo: inside training_step, before the optimiser step).
        with torch.no_grad():
            for k in teacher:
                teacher[k].mul_(m).add_((1 - m) * P[k].detach())
            for k in teacher_head:
                teacher_head[k].mul_(m).add_((1 - m) * H[k].detach())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(groups[0]["params"] + groups[2]["params"], TRAJ["clip"])
        for i, g in enumerate(opt.param_groups):
            g["lr"] = lr_b if i < 2 else lr_h
            g["weight_decay"] = wd if i in (0, 2) else 0.0
        opt.step()
        opt.zero_grad(set_to_none=False)
        print(f"  step {t}: loss {losses[-1]:.8f}  lr {lr_b:.2e}/{lr_h:.2e}  wd {wd:.4f}  m {m:.6f}  "
              f"scales {sa.reshape(-1).tolist()} {sb.reshape(-1).tolist()}")
    check = NecoRNG(1234, stream=1)
    rng_check = np.array([check.next() for _ in range(8)], dtype=np.uint64).view(np.int64)
    tensors = {"losses_f64": np.array(losses, dtype=np.float64), "schedule_f64": np.array(sched, dtype=np.float64),
               "branch_scales": np.stack(masks).astype(np.float32), "target_b": target_b, "rng_check": rng_check}
    for k in P:
        tensors["final." + k] = P[k].detach()
        tensors["final.teacher." + k] = teacher[k]
    for k in H:
        tensors["final." + k] = H[k].detach()
        tensors["final.teacher." + k] = teacher_head[k]
    common.save_fixture(common.fixture_path("train", "tiny_trajectory.safetensors"), tensors,
                        {"config": {k: v for k, v in cfg.items() if k != "subset_blocks"}, "trajectory": TRAJ,
                         "weights": "tiny.safetensors", "drop_path_rates": rates, "torch": torch.__version__})


# ---------------------------------------------------------------------------------------------
# vits14_reg4_formula_grads.safetensors
# ---------------------------------------------------------------------------------------------

SAMPLES = 2048
SAMPLE_PRIME = 104729


def sample_indices(count, n=SAMPLES):
    """Indices k * 104729 mod count for k < n (all of them when count <= n)."""
    if count <= n:
        return np.arange(count)
    return (np.arange(n, dtype=np.int64) * SAMPLE_PRIME) % count


def formula_target(shape):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    return (0.5 * np.sin(0.013 * i + 0.2)).reshape(shape).astype(np.float32)


def make_full(torch):
    timm = common.import_timm()
    F = torch.nn.functional

    def run(dtype):
        model = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=518,
                                  dynamic_img_size=True).eval()
        sd = model.state_dict()
        model.load_state_dict({k: torch.from_numpy(common.formula_tensor(k, tuple(v.shape))) for k, v in sd.items()})
        model = model.to(dtype)
        x = torch.from_numpy(common.formula_input((2, 3, 112, 112))).to(dtype).requires_grad_(True)
        out = model.forward_features(x)
        patches = out[:, 5:]
        target = torch.from_numpy(formula_target(tuple(patches.shape))).to(dtype)
        loss = F.mse_loss(patches, target)
        loss.backward()
        return model, x, loss

    model, x, loss = run(torch.float32)
    model64, x64, loss64 = run(torch.float64)
    tensors = {"loss": loss.detach().reshape(1)}
    named = dict(model.named_parameters())
    named64 = dict(model64.named_parameters())
    worst = 0.0
    keys = [k for k in named if k.startswith("blocks.0.") or k.startswith("blocks.11.")]
    keys += ["cls_token", "reg_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight",
             "norm.bias"]
    for k in keys:
        g = named[k].grad.flatten()
        g64 = named64[k].grad.flatten()
        idx = torch.from_numpy(sample_indices(g.numel()))
        tensors["grad." + k] = g[idx]
        worst = max(worst, float((g[idx].double() - g64[idx]).abs().max() / g64.abs().max()))
    idx = torch.from_numpy(sample_indices(x.numel(), 4096))
    tensors["grad.images"] = x.grad.flatten()[idx]
    worst = max(worst, float((x.grad.flatten()[idx].double() - x64.grad.flatten()[idx]).abs().max() / x64.grad.abs().max()))
    print(f"  vits14 formula 112x112: loss {float(loss.detach()):.8f} (f64 {float(loss64.detach()):.8f}); fp32 vs fp64 gradients: "
          f"max |diff| / max |g| = {worst:.2e}")
    common.save_fixture(common.fixture_path("train", "vits14_reg4_formula_grads.safetensors"), tensors,
                        {"model": "vits14_reg4_formula", "input": "formula_input((2,3,112,112))",
                         "target": "0.5*sin(0.013*i+0.2) over the (2,64,384) patch tokens",
                         "loss": "mse_loss(forward_features(x)[:, 5:], target)",
                         "sampling": f"vectors with <= {SAMPLES} entries in full, else flat indices k*{SAMPLE_PRIME} mod count, "
                                     f"k < {SAMPLES} (images: k < 4096)",
                         "fp32_vs_fp64_grad_rel": f"{worst:.2e}", "torch": torch.__version__})


def main():
    torch = common.setup_torch(2)
    cfg, P0, H0, TH0 = make_tiny(torch)
    make_trajectory(torch, cfg, P0, H0, TH0)
    make_full(torch)


if __name__ == "__main__":
    main()
