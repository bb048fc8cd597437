"""Generate ViT-level reference fixtures for libneco: Tests/Fixtures/vit/*.safetensors.

Run (from anywhere; takes well under a minute on 2 threads):

    /root/.cache/neco-ref/bin/python scripts/reference/make_vit_fixtures.py

Models (all built with timm 1.0.31 on the CPU build of torch 2.13.0, float32, eval mode):

* tiny_reg4, tiny_noreg: timm's DINOv2 recipes (`vit_small_patch14_reg4_dinov2`,
  `vit_small_patch14_dinov2`) shrunk to embed_dim 32, depth 2, heads 4, img_size 70 (5x5 grid),
  random parameters. Weights saved with timm key names; fixtures at 70x70 (native) and 42x56
  (3x4 grid, position table resampled with timm's antialias rule; the other two rules are stored
  as `*_neco` / `*_size` extras).
* tiny_v1: DINO (v1) style, timm `vit_small_patch16_224` shrunk to embed_dim 32, depth 2, heads 4,
  img_size 80 (5x5 grid, CLS slot in the table, no LayerScale). Fixtures at 80x80, 88x88 (border
  pixels dropped by the conv, no resampling) and 112x112 (7x7 grid, NeCo rule).
* tiny_swiglu_meta: DINOv2-g style with a fused SwiGLU FFN (timm `vit_giant_patch14_dinov2`
  shrunk to embed 32, depth 2, heads 4, hidden 64), weights saved under Meta's key names
  (`mlp.w12`, `mlp.w3`, `mask_token`, CLS slot in `pos_embed`). Fixture at 70x70.
* vits14_reg4_formula: full-size timm `vit_small_patch14_reg4_dinov2` with weights from the
  formula in README.md (not stored); only outputs at 224x224 and 182x266 are stored.

Every stage that is stored is also recomputed by common.vit_stages (an explicit forward) and
compared with timm's own modules; the script stops if they disagree.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

torch = common.setup_torch()
import torch.nn.functional as F  # noqa: E402

timm = common.import_timm()

TINY = dict(embed_dim=32, depth=2, num_heads=4, mlp_ratio=4.0)


def model_config(model, variant, rule, extra=None):
    gh, gw = model.patch_embed.grid_size
    cfg = {
        "timm_variant": variant,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_heads": model.blocks[0].attn.num_heads,
        "mlp_hidden": model.blocks[0].mlp.fc1.out_features,
        "patch_size": model.patch_embed.patch_size[0],
        "img_size": list(model.patch_embed.img_size),
        "pos_grid": [gh, gw],
        "num_reg_tokens": model.num_reg_tokens,
        "class_token": model.cls_token is not None,
        "no_embed_class": model.no_embed_class,
        "pos_table_has_cls_slot": model.pos_embed.shape[1] == gh * gw + 1,
        "layerscale": not isinstance(model.blocks[0].ls1, torch.nn.Identity),
        "layernorm_eps": model.norm.eps,
        "gelu": "exact (erf)",
        "pos_embed_rule": rule,
    }
    cfg.update(extra or {})
    return cfg


def timm_stages(model, x):
    """Stages through timm's own modules (the reference)."""
    pe = model.patch_embed(x)  # (B, h, w, D) with dynamic_img_size, else (B, N, D)
    if pe.dim() == 4:
        grid = pe.shape[1:3]
        pe_flat = pe.reshape(pe.shape[0], -1, pe.shape[-1])
    else:
        grid = model.patch_embed.grid_size
        pe_flat = pe
    tokens = model._pos_embed(pe)
    out = {"patch_embed": pe_flat, "tokens": tokens}
    t = model.norm_pre(tokens)
    for i, block in enumerate(model.blocks):
        t = block(t)
        out[f"block{i}"] = t
    out["norm"] = model.norm(t)
    full = model.forward_features(x)
    assert torch.equal(full, out["norm"]), "stage-wise run differs from forward_features"
    return out, tuple(int(g) for g in grid)


def check_close(name, ref, mine, tol=2e-5):
    diff = common.max_abs_diff(ref, mine)
    scale = float(ref.abs().max())
    if diff > tol * max(1.0, scale):
        raise AssertionError(f"{name}: explicit forward differs from timm by {diff} (scale {scale})")
    return diff


STAGES = ("patch_embed", "tokens", "block0", "block1", "norm")


def build_tiny(variant, seed, **kw):
    torch.manual_seed(seed)
    model = timm.create_model(variant, pretrained=False, num_classes=0, **dict(TINY, **kw))
    common.randomize_(model, seed)
    return model.eval()


def tiny_dinov2(name, variant, seed, extra_kw):
    model = build_tiny(variant, seed, img_size=70, dynamic_img_size=True, **extra_kw)
    sd = model.state_dict()
    cfg = model_config(model, variant, "antialias",
                       {"key_names": "timm",
                        "note": "timm DINOv2 recipe; no_embed_class models (reg4) keep the CLS position folded "
                                "into cls_token and have no CLS slot in pos_embed"})
    common.save_weights(common.fixture_path("vit", f"{name}.weights.safetensors"), sd,
                        {"model": name, "config": cfg})
    g = torch.Generator().manual_seed(seed + 1)
    tensors = {}
    diffs = {}
    with torch.no_grad():
        for hw, suffix in (((70, 70), ""), ((42, 56), "_42x56")):
            x = torch.randn(2, 3, *hw, generator=g)
            ref, grid = timm_stages(model, x)
            mine = common.vit_stages(model, x, "antialias")
            tensors["x" + suffix] = x
            for s in STAGES:
                diffs[s + suffix] = check_close(f"{name}{suffix} {s}", ref[s], mine[s])
                tensors[s + suffix] = ref[s]
            if suffix:
                tensors["pos" + suffix + "_antialias"] = mine["pos"]
                for rule in ("neco", "size"):
                    other = common.vit_stages(model, x, rule)
                    tensors["pos" + suffix + "_" + rule] = other["pos"]
                    tensors["tokens" + suffix + "_" + rule] = other["tokens"]
                    tensors["norm" + suffix + "_" + rule] = other["norm"]
                    print(f"  {name}{suffix}: |norm({rule}) - norm(antialias)| max "
                          f"{common.max_abs_diff(other['norm'], ref['norm']):.4f}")
            print(f"  {name}{suffix}: grid {grid}, tokens {tuple(ref['tokens'].shape)}")
    print(f"  {name}: max |explicit - timm| over stages {max(diffs.values()):.3g}")
    common.save_fixture(common.fixture_path("vit", f"{name}.fixture.safetensors"), tensors,
                        {"model": name, "config": cfg, "weights": f"{name}.weights.safetensors",
                         "inputs": {"x": [2, 3, 70, 70], "x_42x56": [2, 3, 42, 56]},
                         "extras": "pos_42x56_<rule> (1, 12, D) patch part of the table used; "
                                   "tokens/norm_42x56_<rule> for the neco and size rules"})
    return model


def tiny_v1(seed=300):
    variant = "vit_small_patch16_224"
    model = build_tiny(variant, seed, img_size=80, dynamic_img_size=True)
    assert isinstance(model.blocks[0].ls1, torch.nn.Identity)
    sd = model.state_dict()
    cfg = model_config(model, variant, "neco",
                       {"key_names": "timm (same as DINO v1)",
                        "note": "DINO v1 style: no LayerScale, CLS slot in pos_embed; non-native grids use the "
                                "NeCo rule (scale_factor (g+0.1)/5)"})
    common.save_weights(common.fixture_path("vit", "tiny_v1.weights.safetensors"), sd,
                        {"model": "tiny_v1", "config": cfg})
    g = torch.Generator().manual_seed(seed + 1)
    tensors = {}
    with torch.no_grad():
        x = torch.randn(2, 3, 80, 80, generator=g)
        ref, grid = timm_stages(model, x)
        mine = common.vit_stages(model, x, "neco")
        tensors["x"] = x
        for s in STAGES:
            check_close(f"tiny_v1 {s}", ref[s], mine[s])
            tensors[s] = ref[s]
        # 88x88: the 16-stride conv ignores the last 8 rows/columns -> still 5x5, no resampling
        # (timm asserts divisibility, so its reference is the top-left 80x80 crop)
        x88 = torch.randn(1, 3, 88, 88, generator=g)
        ref88, grid88 = timm_stages(model, x88[:, :, :80, :80].contiguous())
        mine88 = common.vit_stages(model, x88, "neco")
        assert grid88 == (5, 5) and mine88["grid"] == (5, 5)
        tensors["x_88x88"] = x88
        for s in STAGES:
            check_close(f"tiny_v1_88 {s}", ref88[s], mine88[s])
            tensors[s + "_88x88"] = ref88[s]
        # 112x112: 7x7 grid, NeCo rule (explicit forward only; timm would use its antialias rule)
        x112 = torch.randn(1, 3, 112, 112, generator=g)
        m112 = common.vit_stages(model, x112, "neco")
        tensors["x_112x112"] = x112
        for s in STAGES:
            tensors[s + "_112x112"] = m112[s]
        tensors["pos_112x112_neco"] = m112["pos"]
        # cross-check the NeCo rule through timm itself by patching the resampler
        import timm.models.vision_transformer as tvit
        orig = tvit.resample_abs_pos_embed

        def neco_resample(posemb, new_size, old_size=None, num_prefix_tokens=1, **_):
            prefix, rest = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
            return torch.cat([prefix, common.resample_pos(rest, tuple(old_size), tuple(new_size), "neco")], 1)

        tvit.resample_abs_pos_embed = neco_resample
        try:
            via_timm, _ = timm_stages(model, x112)
        finally:
            tvit.resample_abs_pos_embed = orig
        for s in STAGES:
            check_close(f"tiny_v1_112 {s}", via_timm[s], m112[s])
    print(f"  tiny_v1: tokens {tuple(ref['tokens'].shape)}, 112x112 tokens {tuple(m112['tokens'].shape)}")
    common.save_fixture(common.fixture_path("vit", "tiny_v1.fixture.safetensors"), tensors,
                        {"model": "tiny_v1", "config": cfg, "weights": "tiny_v1.weights.safetensors",
                         "inputs": {"x": [2, 3, 80, 80], "x_88x88": [1, 3, 88, 88], "x_112x112": [1, 3, 112, 112]}})


def to_meta_names(sd, mask_token):
    """timm DINOv2-g (SwiGLUPacked) state dict -> Meta's DINOv2 key names."""
    out = {}
    for k, v in sd.items():
        k2 = k.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.")
        out[k2] = v
    out["mask_token"] = mask_token
    return dict(sorted(out.items()))


def tiny_swiglu(seed=400):
    variant = "vit_giant_patch14_dinov2"
    model = build_tiny(variant, seed, img_size=70, dynamic_img_size=True)
    mlp = model.blocks[0].mlp
    assert mlp.fc1.weight.shape == (128, 32) and mlp.fc2.weight.shape == (32, 64), "unexpected SwiGLU shapes"
    assert model.pos_embed.shape == (1, 26, 32) and not model.no_embed_class
    # check timm's gate order against Meta's formula: x1, x2 = w12(x).chunk(2); silu(x1) * x2
    with torch.no_grad():
        probe = torch.randn(3, 32, generator=torch.Generator().manual_seed(seed + 7))
        x1, x2 = F.linear(probe, mlp.fc1.weight, mlp.fc1.bias).chunk(2, dim=-1)
        meta = F.linear(F.silu(x1) * x2, mlp.fc2.weight, mlp.fc2.bias)
        assert common.max_abs_diff(meta, mlp(probe)) < 1e-6, "SwiGLUPacked gate order differs from Meta's"
    mask_token = 0.5 * torch.randn(1, 32, generator=torch.Generator().manual_seed(seed + 9))
    sd = to_meta_names(model.state_dict(), mask_token)
    cfg = model_config(model, variant, "none (native grid only)",
                       {"key_names": "meta",
                        "ffn": "swiglu fused: x1, x2 = w12(x).chunk(2, -1); w3(silu(x1) * x2)",
                        "swiglu_hidden": 64})
    common.save_weights(common.fixture_path("vit", "tiny_swiglu_meta.weights.safetensors"), sd,
                        {"model": "tiny_swiglu_meta", "config": cfg})
    g = torch.Generator().manual_seed(seed + 1)
    tensors = {}
    with torch.no_grad():
        x = torch.randn(2, 3, 70, 70, generator=g)
        ref, grid = timm_stages(model, x)
        mine = common.vit_stages(model, x, "antialias")
        tensors["x"] = x
        for s in STAGES:
            check_close(f"tiny_swiglu {s}", ref[s], mine[s])
            tensors[s] = ref[s]
    print(f"  tiny_swiglu_meta: {len(sd)} tensors, tokens {tuple(ref['tokens'].shape)}")
    common.save_fixture(common.fixture_path("vit", "tiny_swiglu_meta.fixture.safetensors"), tensors,
                        {"model": "tiny_swiglu_meta", "config": cfg,
                         "weights": "tiny_swiglu_meta.weights.safetensors", "inputs": {"x": [2, 3, 70, 70]}})


FORMULA_TEXT = (
    "For every state-dict entry of timm vit_small_patch14_reg4_dinov2 (img_size 518) with key k and n elements, "
    "flat C-order index i: h = FNV-1a-32(utf8(k)) (offset 2166136261, prime 16777619, mod 2^32); "
    "x = (i*2654435761 + h) mod 2^32; x ^= x>>16; x = x*0x85EBCA6B mod 2^32; x ^= x>>13; "
    "x = x*0xC2B2AE35 mod 2^32; x ^= x>>16; base = x/2^32*2 - 1 (float64); "
    "value = 1 + 0.1*base if k ends with norm1.weight or norm2.weight or k == norm.weight; "
    "0.1 + 0.05*base if k ends with .gamma; 0.02*base if k ends with .bias; "
    "0.5*base if k in (cls_token, reg_token, pos_embed); else 0.05*base; cast to float32. "
    "Input x (2,3,H,W): x[i] = 2*sin(0.0173*i + 0.5) (float64 -> float32).")


def formula_model():
    variant = "vit_small_patch14_reg4_dinov2"
    model = timm.create_model(variant, pretrained=False, img_size=518, dynamic_img_size=True).eval()
    sd = model.state_dict()
    new = {k: torch.from_numpy(common.formula_tensor(k, tuple(v.shape))) for k, v in sd.items()}
    model.load_state_dict(new, strict=True)
    keys = [(k, list(v.shape), common.formula_kind(k)) for k, v in sd.items()]
    cfg = model_config(model, variant, "antialias")
    tensors = {}
    with torch.no_grad():
        for (hh, ww), name in (((224, 224), "224"), ((182, 266), "182x266")):
            x = torch.from_numpy(common.formula_input((2, 3, hh, ww)))
            t0 = time.time()
            out = model.forward_features(x)
            dt = time.time() - t0
            mine = common.vit_stages(model, x, "antialias")
            check_close(f"formula {name}", out, mine["norm"])
            tensors["out_" + name] = out
            if name == "224":
                tensors["cls_224"] = out[:, 0]
            print(f"  formula {name}: out {tuple(out.shape)}, forward {dt:.2f}s, "
                  f"|out| max {float(out.abs().max()):.3f}")
    common.save_fixture(common.fixture_path("vit", "vits14_reg4_formula.fixture.safetensors"), tensors,
                        {"model": "vits14_reg4_formula", "config": cfg, "formula": FORMULA_TEXT,
                         "state_dict_keys": keys,
                         "inputs": {"out_224": [2, 3, 224, 224], "out_182x266": [2, 3, 182, 266]}})
    return keys


def main():
    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {torch.get_num_threads()}")
    tiny_dinov2("tiny_reg4", "vit_small_patch14_reg4_dinov2", 100, {})
    tiny_dinov2("tiny_noreg", "vit_small_patch14_dinov2", 200, {})
    tiny_v1()
    tiny_swiglu()
    keys = formula_model()
    if "--print-keys" in sys.argv:
        for k, shape, kind in keys:
            print(f"{k}\t{tuple(shape)}\t{kind}")


if __name__ == "__main__":
    main()
