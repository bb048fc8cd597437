"""Generate kernel-level reference fixtures for libneco: Tests/Fixtures/kernels/*.safetensors.

Run (from anywhere; takes a few seconds):

    /root/.cache/neco-ref/bin/python scripts/reference/make_kernel_fixtures.py

Writes layernorm, gelu, softmax, attention, patch_embed and posembed fixtures, computed with
PyTorch on the CPU in float32 (plus float64 references, stored as float64 in tensors whose name
ends in `64` / `_f64`). The posembed fixture checks the "antialias" rule against timm's
`resample_abs_pos_embed`. All seeds are fixed; rerunning reproduces the files byte for byte.
See scripts/reference/README.md for every tensor name and shape.
"""
import math
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

torch = common.setup_torch()
import torch.nn.functional as F  # noqa: E402


def gen(seed):
    return torch.Generator().manual_seed(seed)


def layernorm():
    g = gen(101)
    x = torch.randn(5, 37, generator=g) * 3 + 1
    weight = 1 + 0.3 * torch.randn(37, generator=g)
    bias = 0.2 * torch.randn(37, generator=g)
    eps = 1e-6
    y = F.layer_norm(x, (37,), weight, bias, eps)
    y64 = F.layer_norm(x.double(), (37,), weight.double(), bias.double(), eps)
    common.save_fixture(common.fixture_path("kernels", "layernorm.safetensors"),
                        {"x": x, "weight": weight, "bias": bias, "y": y, "y64": y64},
                        {"kernel": "layernorm", "eps": 1e-6, "normalized_dim": -1})


def gelu():
    g = gen(102)
    x = torch.cat([torch.linspace(-8, 8, 601), 3 * torch.randn(399, generator=g)])
    y = F.gelu(x)
    y64 = F.gelu(x.double())
    ytanh = F.gelu(x, approximate="tanh")
    common.save_fixture(common.fixture_path("kernels", "gelu.safetensors"),
                        {"x": x, "y": y, "y64": y64, "y_tanh": ytanh},
                        {"kernel": "gelu", "form": "exact erf: 0.5 x (1 + erf(x / sqrt 2)); y_tanh is the tanh"
                         " approximation, only to show the difference"})


def softmax():
    g = gen(103)
    x = 5 * torch.randn(7, 53, generator=g)
    y = torch.softmax(x, dim=-1)
    y64 = torch.softmax(x.double(), dim=-1)
    common.save_fixture(common.fixture_path("kernels", "softmax.safetensors"),
                        {"x": x, "y": y, "y64": y64}, {"kernel": "softmax", "dim": -1})


def attention():
    g = gen(104)
    b, t, d, heads = 2, 11, 48, 6
    hd = d // heads
    x = torch.randn(b, t, d, generator=g)
    qkv_w = torch.randn(3 * d, d, generator=g) / math.sqrt(d) * 1.5
    qkv_b = 0.1 * torch.randn(3 * d, generator=g)
    proj_w = torch.randn(d, d, generator=g) / math.sqrt(d)
    proj_b = 0.1 * torch.randn(d, generator=g)

    def run(dtype):
        qkv = F.linear(x.to(dtype), qkv_w.to(dtype), qkv_b.to(dtype))  # (B, T, 3D)
        # output feature k -> (which = k // D, head = (k % D) // hd, channel = k % hd)
        qkv = qkv.reshape(b, t, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, T, hd)
        scores = (q @ k.transpose(-2, -1)) * hd ** -0.5
        attn = torch.softmax(scores, dim=-1)
        ctx = attn @ v  # (B, heads, T, hd)
        merged = ctx.transpose(1, 2).reshape(b, t, d)  # heads concatenated in head order
        out = F.linear(merged, proj_w.to(dtype), proj_b.to(dtype))
        return q, k, v, attn, merged, out

    q, k, v, attn, merged, out = run(torch.float32)
    _, _, _, _, _, out64 = run(torch.float64)
    # check the explicit math against PyTorch's fused kernel
    sdpa = F.scaled_dot_product_attention(q, k, v)
    sdpa_out = F.linear(sdpa.transpose(1, 2).reshape(b, t, d), proj_w, proj_b)
    diff = common.max_abs_diff(sdpa_out, out)
    assert diff <= 1e-6, f"explicit attention vs sdpa: {diff}"
    print(f"  attention: explicit vs scaled_dot_product_attention max |diff| = {diff:.3g}")
    # check the layout against a literal per-feature loop over the qkv output
    full = F.linear(x, qkv_w, qkv_b)
    for kk in (0, 7, 48, 61, 100, 143):
        which, head, ch = kk // d, (kk % d) // hd, kk % hd
        assert torch.equal(full[..., kk], (q, k, v)[which][:, head, :, ch])
    common.save_fixture(common.fixture_path("kernels", "attention.safetensors"),
                        {"x": x, "qkv_weight": qkv_w, "qkv_bias": qkv_b, "proj_weight": proj_w,
                         "proj_bias": proj_b, "q": q, "k": k, "v": v, "attn": attn, "merged": merged,
                         "out": out, "out64": out64},
                        {"kernel": "attention", "heads": heads, "head_dim": hd, "scale": hd ** -0.5,
                         "layout": "qkv feature k -> (k // D, (k % D) // head_dim, k % head_dim)",
                         "sdpa_max_abs_diff": diff})


def patch_embed():
    g = gen(105)
    img = torch.randn(2, 3, 28, 42, generator=g)
    weight = torch.randn(16, 3, 14, 14, generator=g) / math.sqrt(3 * 14 * 14)
    bias = 0.1 * torch.randn(16, generator=g)
    conv = F.conv2d(img, weight, bias, stride=14)  # (2, 16, 2, 3)
    tokens = conv.flatten(2).transpose(1, 2)  # (2, 6, 16), row-major over the patch grid
    tokens64 = F.conv2d(img.double(), weight.double(), bias.double(), stride=14).flatten(2).transpose(1, 2)
    # the same as a matmul over flattened (channel, row, col) patches
    patches = img.reshape(2, 3, 2, 14, 3, 14).permute(0, 2, 4, 1, 3, 5).reshape(2, 6, 588)
    alt = patches @ weight.reshape(16, 588).T + bias
    assert common.max_abs_diff(alt, tokens) < 1e-5
    common.save_fixture(common.fixture_path("kernels", "patch_embed.safetensors"),
                        {"image": img, "weight": weight, "bias": bias, "tokens": tokens,
                         "tokens64": tokens64},
                        {"kernel": "patch_embed", "patch": 14, "stride": 14, "grid": [2, 3]})


TARGETS = [(16, 16), (7, 7), (32, 32), (13, 19), (40, 40), (37, 37), (1, 1)]
SMALL_TARGETS = [(3, 4), (8, 7)]


def posembed(timm):
    from timm.layers import resample_abs_pos_embed

    g = gen(106)
    tensors = {}
    pe = torch.randn(1, 37 * 37, 8, generator=g)
    small = torch.randn(1, 5 * 5, 8, generator=g)
    tensors["pe"] = pe
    tensors["pe_small"] = small
    report = {}
    for table, grid, targets, prefix in ((pe, (37, 37), TARGETS, ""), (small, (5, 5), SMALL_TARGETS, "small_")):
        for h, w in targets:
            for rule in common.RULES:
                name = f"{prefix}{rule}_{h}x{w}"
                c = table.shape[-1]
                src = table.reshape(1, grid[0], grid[1], c).permute(0, 3, 1, 2)
                y32 = common.resample_grid(src, h, w, rule).permute(0, 2, 3, 1).reshape(1, h * w, c)
                y64 = common.resample_grid(src.double(), h, w, rule).permute(0, 2, 3, 1).reshape(1, h * w, c)
                if (h, w) == grid and rule != "neco":
                    # output-size rules at the source size are exactly the identity: not stored
                    assert torch.equal(y32, table) and torch.equal(y64, table.double()), name
                    continue
                tensors[name] = y32
                tensors[name + "_f64"] = y64
                if rule == "antialias":
                    t = resample_abs_pos_embed(table, new_size=(h, w), old_size=grid, num_prefix_tokens=0)
                    diff = common.max_abs_diff(t, y32)
                    report[name] = diff
                    # timm returns the table unchanged when the size matches; interpolation at scale 1
                    # is the identity up to rounding
                    assert diff <= 1e-6, f"{name}: timm vs antialias rule {diff}"
    print("  posembed: max |timm resample_abs_pos_embed - antialias rule| =", max(report.values()))
    # a few cross-rule differences, for the README
    for h, w in ((16, 16), (32, 32), (13, 19)):
        a = tensors[f"neco_{h}x{w}_f64"]
        s = tensors[f"size_{h}x{w}_f64"]
        aa = tensors[f"antialias_{h}x{w}_f64"]
        print(f"  posembed {h}x{w}: |neco-size| max {common.max_abs_diff(a, s):.4f}, "
              f"|size-antialias| max {common.max_abs_diff(s, aa):.4f}")
    common.save_fixture(common.fixture_path("kernels", "posembed.safetensors"), tensors,
                        {"kernel": "posembed",
                         "targets": [list(t) for t in TARGETS], "small_targets": [list(t) for t in SMALL_TARGETS],
                         "rules": {"neco": "F.interpolate(scale_factor=((h+0.1)/gh, (w+0.1)/gw), mode=bicubic, "
                                           "align_corners=False)",
                                   "size": "F.interpolate(size=(h, w), mode=bicubic, align_corners=False)",
                                   "antialias": "F.interpolate(size=(h, w), mode=bicubic, align_corners=False, "
                                                "antialias=True) == timm resample_abs_pos_embed"},
                         "timm_max_abs_diff": max(report.values())})


def main():
    timm = common.import_timm()
    print(f"torch {torch.__version__}, timm {timm.__version__}")
    layernorm()
    gelu()
    softmax()
    attention()
    patch_embed()
    posembed(timm)


if __name__ == "__main__":
    main()
