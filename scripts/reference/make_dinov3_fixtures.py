"""Generate DINOv3 reference fixtures for libneco: Tests/Fixtures/dinov3/*.safetensors.

Run (takes about a minute on 2 threads):

    /root/.cache/neco-ref/bin/python scripts/reference/make_dinov3_fixtures.py

Every model is timm 1.0.31's Eva with `rope_type='dinov3'` (CPU build of torch 2.13.0, float32,
eval mode). Files:

* tiny_mlp.{meta,hf}.weights + tiny_mlp.fixture: `vit_small_patch16_dinov3_qkvb` shrunk to
  embed 32, depth 2, heads 2 (head width 16), MLP 64, random parameters (LayerScale drawn around
  0.5, q and v biases non-zero). The same weights are written in Meta's layout (storage_tokens,
  qkv.bias with its bias_mask, ls1.gamma, rope_embed.periods rounded to bfloat16, mask_token)
  and Hugging Face's DINOv3ViTModel layout (embeddings.*, layer.N.attention.{q,k,v,o}_proj,
  layer_scale1.lambda1, mlp.up_proj/down_proj). Outputs with float32 periods (timm's default,
  suffix `_f32`) and with bfloat16-rounded periods (Meta's stored ones, suffix `_bf16`), at
  64x64 and 48x80, batch 2, with every stage, the RoPE tables and block 0's attention output.
* tiny_swiglu.timm.weights + tiny_swiglu.fixture: `vit_small_plus_patch16_dinov3` (SwiGLU, no
  qkv bias) shrunk the same way, weights under timm's names (reg_token, gamma_1, mlp.fc1_g /
  fc1_x / fc2); float32 periods.
* {vits16,vits16plus,vitb16}_formula.fixture: full-size `vit_small_patch16_dinov3`,
  `vit_small_plus_patch16_dinov3`, `vit_base_patch16_dinov3` with the formula weights of
  README.md (timm key names; `gamma_1`/`gamma_2` use the `.gamma` rule); outputs at 224x224,
  192x320 and 512x512, batch 2, formula input. To keep the files small only the tokens listed in
  `index_<size>` are stored (CLS, the 4 registers and patch tokens at a fixed stride).
* grads.fixture (+ grads.weights, Meta layout): backward of the tiny SwiGLU model with a masked key
  bias (`vit_small_plus_patch16_dinov3_qkvb` shrunk) at 48x64, batch 2: loss = sum(out * w) for a
  fixed random w; gradients of every parameter (canonical libneco names) and of the input.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

torch = common.setup_torch()
timm = common.import_timm()
import numpy as np  # noqa: E402

TINY = dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, dynamic_img_size=True, num_classes=0)
TINY_SIZES = ((64, 64, ""), (48, 80, "_48x80"))
FULL_SIZES = ((224, 224, "224"), (192, 320, "192x320"), (512, 512, "512"))
PATCH_STRIDE = 37   # stored patch tokens: every 37th


def check_close(name, a, b, atol=2e-5):
    err = float((a - b).abs().max())
    if err > atol:
        raise SystemExit(f"{name}: explicit forward differs from timm by {err}")


def randomize(model, gen):
    """Random parameters with non-trivial LayerScale, norms and biases."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma_1") or name.endswith("gamma_2"):
                p.copy_(0.5 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name in ("cls_token", "reg_token"):
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[-1] if p.dim() == 2 else int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)


def bf16_periods(model):
    return model.rope.periods.to(torch.bfloat16).to(torch.float32)


def set_periods(model, periods):
    model.rope.periods.copy_(periods)


def stages(model, x):
    """Explicit forward (patch_embed, tokens, blockN, norm) plus RoPE tables and block 0's attention."""
    out = {}
    b, _, h, w = x.shape
    gh, gw = h // 16, w // 16
    pe = model.patch_embed(x)                      # (B, gh, gw, D) with dynamic_img_size
    pe = pe.reshape(b, gh * gw, -1)
    out["patch_embed"] = pe
    tok = torch.cat([model.cls_token.expand(b, -1, -1), model.reg_token.expand(b, -1, -1), pe], dim=1)
    out["tokens"] = tok
    rope = model.rope.get_embed(shape=[gh, gw])     # (N, 2E): sin | cos, rotate-half layout
    e = rope.shape[-1] // 2
    out["rope_sin"] = rope[:, : e // 2]
    out["rope_cos"] = rope[:, e: e + e // 2]
    xx = tok
    for i, blk in enumerate(model.blocks):
        if i == 0:
            out["attn0"] = blk.attn(blk.norm1(xx), rope=rope)
        xx = blk(xx, rope=rope)
        out[f"block{i}"] = xx
    out["norm"] = model.norm(xx)
    ref = model.forward_features(x)
    check_close("forward_features", ref, out["norm"])
    return out


def meta_state(model, periods):
    """timm Eva (DINOv3) state dict → Meta's key names."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    d = model.embed_dim
    out = {"cls_token": sd.pop("cls_token"), "storage_tokens": sd.pop("reg_token"),
           "mask_token": torch.zeros(1, d), "rope_embed.periods": periods.clone()}
    for k, v in sd.items():
        if ".attn.q_bias" in k:
            p = k.replace("attn.q_bias", "attn.qkv.")
            vb = sd[k.replace("q_bias", "v_bias")]
            out[p + "bias"] = torch.cat([v, 0.3 * torch.ones_like(v), vb])   # k part masked away
            out[p + "bias_mask"] = torch.cat([torch.ones_like(v), torch.zeros_like(v), torch.ones_like(v)])
            continue
        if ".attn.v_bias" in k:
            continue
        k = k.replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        k = k.replace("mlp.fc1_g", "mlp.w1").replace("mlp.fc1_x", "mlp.w2")
        if "mlp.w1" in k or "mlp.w2" in k or any(s in k for s in ("mlp.fc1", "mlp.fc2")):
            if hasattr(model.blocks[0].mlp, "fc1_g"):
                k = k.replace("mlp.fc2", "mlp.w3")
        out[k] = v
    return out


def hf_state(model):
    """timm Eva (DINOv3, MLP) state dict → Hugging Face DINOv3ViTModel key names."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    d = model.embed_dim
    out = {"embeddings.cls_token": sd["cls_token"], "embeddings.register_tokens": sd["reg_token"],
           "embeddings.mask_token": torch.zeros(1, 1, d),
           "embeddings.patch_embeddings.weight": sd["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.bias": sd["patch_embed.proj.bias"],
           "norm.weight": sd["norm.weight"], "norm.bias": sd["norm.bias"]}
    for i in range(len(model.blocks)):
        s, p = f"blocks.{i}.", f"layer.{i}."
        q, k, v = sd[s + "attn.qkv.weight"].chunk(3, dim=0)
        out[p + "attention.q_proj.weight"], out[p + "attention.k_proj.weight"], out[p + "attention.v_proj.weight"] = q, k, v
        out[p + "attention.q_proj.bias"] = sd[s + "attn.q_bias"]
        out[p + "attention.v_proj.bias"] = sd[s + "attn.v_bias"]
        out[p + "attention.o_proj.weight"] = sd[s + "attn.proj.weight"]
        out[p + "attention.o_proj.bias"] = sd[s + "attn.proj.bias"]
        out[p + "layer_scale1.lambda1"] = sd[s + "gamma_1"]
        out[p + "layer_scale2.lambda1"] = sd[s + "gamma_2"]
        for n in ("norm1", "norm2"):
            out[p + n + ".weight"], out[p + n + ".bias"] = sd[s + n + ".weight"], sd[s + n + ".bias"]
        out[p + "mlp.up_proj.weight"], out[p + "mlp.up_proj.bias"] = sd[s + "mlp.fc1.weight"], sd[s + "mlp.fc1.bias"]
        out[p + "mlp.down_proj.weight"], out[p + "mlp.down_proj.bias"] = sd[s + "mlp.fc2.weight"], sd[s + "mlp.fc2.bias"]
    return out


def config_of(model, variant):
    return {"timm_variant": variant, "timm_version": timm.__version__, "torch_version": torch.__version__,
            "embed_dim": model.embed_dim, "depth": len(model.blocks), "num_heads": model.blocks[0].attn.num_heads,
            "patch_size": 16, "num_reg_tokens": model.reg_token.shape[1], "layernorm_eps": model.norm.eps,
            "rope": "dinov3, base 100, rotate-half, separate normalisation"}


def tiny_mlp():
    gen = torch.Generator().manual_seed(300)
    model = timm.create_model("vit_small_patch16_dinov3_qkvb", pretrained=False, img_size=64, **TINY).eval()
    randomize(model, gen)
    f32 = model.rope.periods.clone()
    bf16 = bf16_periods(model)
    assert not torch.equal(f32, bf16)
    tensors = {"periods_f32": f32, "periods_bf16": bf16}
    with torch.no_grad():
        for h, w, sfx in TINY_SIZES:
            x = torch.randn(2, 3, h, w, generator=gen)
            tensors["x" + sfx] = x
            for tag, periods in (("_f32", f32), ("_bf16", bf16)):
                set_periods(model, periods)
                for name, v in stages(model, x).items():
                    tensors[name + sfx + tag] = v
        set_periods(model, f32)
    common.save_weights(common.fixture_path("dinov3", "tiny_mlp.meta.weights.safetensors"), meta_state(model, bf16))
    common.save_weights(common.fixture_path("dinov3", "tiny_mlp.hf.weights.safetensors"), hf_state(model))
    common.save_fixture(common.fixture_path("dinov3", "tiny_mlp.fixture.safetensors"), tensors,
                        {"model": "tiny_mlp", "config": config_of(model, "vit_small_patch16_dinov3_qkvb")})


def tiny_swiglu():
    gen = torch.Generator().manual_seed(301)
    model = timm.create_model("vit_small_plus_patch16_dinov3", pretrained=False, img_size=64, **TINY).eval()
    randomize(model, gen)
    tensors = {}
    with torch.no_grad():
        for h, w, sfx in TINY_SIZES:
            x = torch.randn(2, 3, h, w, generator=gen)
            tensors["x" + sfx] = x
            for name, v in stages(model, x).items():
                tensors[name + sfx] = v
    common.save_weights(common.fixture_path("dinov3", "tiny_swiglu.timm.weights.safetensors"), model.state_dict())
    common.save_fixture(common.fixture_path("dinov3", "tiny_swiglu.fixture.safetensors"), tensors,
                        {"model": "tiny_swiglu", "config": config_of(model, "vit_small_plus_patch16_dinov3")})


FORMULA_TEXT = (
    "The formula of vits14_reg4_formula applied to the state-dict keys of timm's DINOv3 model (no rope buffers), "
    "with keys ending in gamma_1 / gamma_2 using the .gamma rule (0.1 + 0.05*base). Input x (2,3,H,W): "
    "x[i] = 2*sin(0.0173*i + 0.5).")


def formula_kind(key):
    if key.endswith("gamma_1") or key.endswith("gamma_2"):
        return "gamma"
    return common.formula_kind(key)


def formula_tensor(key, shape):
    kind = formula_kind(key)
    h = common.fnv1a32(key)
    n = int(np.prod(shape))
    base = common.formula_hash(np.arange(n, dtype=np.uint64), h)
    amp = {"norm_weight": (1.0, 0.1), "gamma": (0.1, 0.05), "bias": (0.0, 0.02), "token": (0.0, 0.5)}.get(kind, (0.0, 0.05))
    return (amp[0] + amp[1] * base).reshape(shape).astype(np.float32)


def token_index(h, w):
    n = (h // 16) * (w // 16)
    return np.array(list(range(5)) + [5 + j for j in range(0, n, PATCH_STRIDE)], dtype=np.int64)


def formula(variant, name):
    model = timm.create_model(variant, pretrained=False, img_size=224, dynamic_img_size=True, num_classes=0).eval()
    sd = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(formula_tensor(k, tuple(v.shape))) for k, v in sd.items()}, strict=True)
    tensors = {}
    with torch.no_grad():
        for h, w, sfx in FULL_SIZES:
            x = torch.from_numpy(common.formula_input((2, 3, h, w)))
            t0 = time.time()
            out = model.forward_features(x)
            idx = token_index(h, w)
            tensors["index_" + sfx] = idx.astype(np.float32)  # exact small integers
            tensors["out_" + sfx] = out[:, torch.from_numpy(idx)]
            print(f"  {name} {sfx}: out {tuple(out.shape)}, {time.time() - t0:.1f}s, |out| max {float(out.abs().max()):.3f}")
    keys = [(k, list(v.shape)) for k, v in sd.items()]
    common.save_fixture(common.fixture_path("dinov3", f"{name}_formula.fixture.safetensors"), tensors,
                        {"model": name, "config": config_of(model, variant), "formula": FORMULA_TEXT,
                         "state_dict_keys": keys})


def grads():
    gen = torch.Generator().manual_seed(302)
    model = timm.create_model("vit_small_plus_patch16_dinov3_qkvb", pretrained=False, img_size=64, **TINY).eval()
    randomize(model, gen)
    meta = meta_state(model, model.rope.periods.clone())
    x = torch.randn(2, 3, 48, 64, generator=gen, requires_grad=True)
    out = model.forward_features(x)
    wgt = torch.randn(out.shape, generator=gen)
    loss = (out * wgt).sum()
    loss.backward()
    d = model.embed_dim
    tensors = {"x": x.detach(), "w": wgt, "out": out.detach(), "grad.x": x.grad}
    # Canonical names: SwiGLU gate | value rows fused into mlp.w12; q | k (zero) | v bias fused.
    for k, p in model.named_parameters():
        g = p.grad
        k2 = k.replace("reg_token", "register_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        if k.endswith("mlp.fc1_x.weight") or k.endswith("mlp.fc1_x.bias") or k.endswith("attn.v_bias"):
            continue
        if k.endswith("mlp.fc1_g.weight") or k.endswith("mlp.fc1_g.bias"):
            other = dict(model.named_parameters())[k.replace("fc1_g", "fc1_x")].grad
            g = torch.cat([g, other])
            k2 = k2.replace("mlp.fc1_g", "mlp.w12")
        elif k.endswith("mlp.fc2.weight") or k.endswith("mlp.fc2.bias"):
            k2 = k2.replace("mlp.fc2", "mlp.w3")
        elif k.endswith("attn.q_bias"):
            vg = dict(model.named_parameters())[k.replace("q_bias", "v_bias")].grad
            g = torch.cat([g, torch.zeros(d), vg])
            k2 = k2.replace("attn.q_bias", "attn.qkv.bias")
        tensors["grad." + k2] = g
    common.save_weights(common.fixture_path("dinov3", "grads.weights.safetensors"), meta)
    common.save_fixture(common.fixture_path("dinov3", "grads.fixture.safetensors"), tensors,
                        {"model": "grads", "config": config_of(model, "vit_small_plus_patch16_dinov3_qkvb"),
                         "loss": "sum(out * w), out = forward_features(x) (B, T, D)"})


def main():
    print(f"torch {torch.__version__}, timm {timm.__version__}, threads {torch.get_num_threads()}")
    tiny_mlp()
    tiny_swiglu()
    grads()
    if "--no-formula" not in sys.argv:
        formula("vit_small_patch16_dinov3", "vits16")
        formula("vit_small_plus_patch16_dinov3", "vits16plus")
        formula("vit_base_patch16_dinov3", "vitb16")


if __name__ == "__main__":
    main()
