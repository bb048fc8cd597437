#!/usr/bin/env python3
"""PyTorch references for libneco's NeCo objective (Tests/Fixtures/neco/).

Writes (this docstring is the fixture documentation):

* softsort.safetensors: diffsort 0.2.0 `DiffSortNet` soft permutation matrices X, soft-sorted
  values and the input gradient of L = sum(X * G) (G a fixed formula, below), for the bitonic and
  odd_even networks and every relaxation at several steepness values, n = 5 (padding case) and
  n = 49 (NeCo's size). float32 like NeCo, plus float64 runs of a few cases (`*_f64`).
* roi_align.safetensors: `torchvision.ops.roi_align(..., sampling_ratio=-1, aligned=True)` forward
  and the gradient wrt the features of L = sum(out * G), on 7x7, 37x37 and 5x9 maps, with boxes at
  and beyond the borders, boxes smaller than a cell, degenerate boxes. Stored channel-last
  (features (N, H, W, C), outputs (R, PH, PW, C)).
* loss.safetensors: the NeCo loss as the official code computes it (vpariza/NeCo `src/neco.py`
  `knn_loss`, `compute_knn_perm_mat`, `compute_knn_subloss`; batch-reference mode with the
  permutations stored), on correlated random feature maps with fixed seeds and overlap boxes from
  NeCo's `calculate_bboxes`: the loss, the ten pair losses and the gradient wrt the student maps.
* augment.safetensors: torchvision's functional colour ops on PIL images (brightness, contrast,
  saturation, hue, grayscale), PIL's GaussianBlur, a fixed-order jitter composition, and
  `resized_crop` to 98 and 42 (bilinear), on small synthetic uint8 images (stored as float32).
* boxes.safetensors: crop boxes (original pixels) and the `gc` / `all` boxes that NeCo's
  `calculate_bboxes` makes from them (float32), for several crop sets.

Upstream-gradient formula (also computed by the Swift tests):
    G[k] = sin(0.37 * k + 0.1) over the flat C-order index k, float64 then cast to the dtype.

Run with the torchvision venv (REFERENCE-NUMBERS.md "A reference Python environment"):
    /root/.cache/neco-ref-tv/bin/python scripts/reference/make_neco_fixtures.py [softsort roi boxes loss augment]
(no argument: all parts, ~75 s; the files are byte-identical on rerun.)
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import common  # noqa: E402

RELAXATIONS = ["cauchy", "logistic", "logistic_phi", "gaussian", "reciprocal", "optimal"]


def formula_grad(torch, shape, dtype):
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.float64)
    return torch.from_numpy(np.sin(0.37 * k + 0.1).reshape(shape)).to(dtype)


# ---------------------------------------------------------------------------------------------
# Soft sorting (diffsort 0.2.0)
# ---------------------------------------------------------------------------------------------

def sort_inputs(n, rng):
    if n == 5:
        rows = [[0.3, -0.1, 0.5, 0.2, 0.0], rng.uniform(-1, 1, n)]
    elif n == 4:
        rows = [[0.3, -0.1, 0.5, 0.2], rng.uniform(-1, 1, n)]
    else:
        rows = [rng.uniform(-1, 1, n), 0.6 + 0.03 * rng.standard_normal(n)]  # spread / realistic cosines
    return np.array(rows, dtype=np.float64)


def sort_case(torch, DiffSortNet, net, relax, s, n, x64, dtype):
    sorter = DiffSortNet(net, n, steepness=s, distribution=relax)
    x = torch.from_numpy(x64).to(dtype).clone().requires_grad_(True)
    sorted_x, X = sorter(x)
    g = formula_grad(torch, tuple(X.shape), dtype)
    (X * g).sum().backward()
    return x.detach(), X.detach(), sorted_x.detach(), x.grad.detach()


def make_softsort(torch):
    from diffsort import DiffSortNet

    rng = np.random.default_rng(500)
    tensors, cases = {}, []
    inputs = {n: sort_inputs(n, rng) for n in (4, 5, 49)}
    spec = []
    for net in ("bitonic", "odd_even"):
        for relax in RELAXATIONS:
            for s in (10.0, 100.0):
                spec.append((net, relax, s, 5))
    for relax in RELAXATIONS:
        spec.append(("bitonic", relax, 100.0, 49))
    spec += [("bitonic", "cauchy", 10.0, 49), ("odd_even", "cauchy", 100.0, 49), ("odd_even", "logistic", 30.0, 49),
             ("bitonic", "cauchy", 10.0, 4)]
    for net, relax, s, n in spec:
        name = f"{net}_{relax}_s{int(s)}_n{n}"
        x, X, xs, dx = sort_case(torch, DiffSortNet, net, relax, s, n, inputs[n], torch.float32)
        tensors[name + ".x"] = x
        tensors[name + ".X"] = X
        tensors[name + ".sorted"] = xs
        tensors[name + ".dx"] = dx
        cases.append(name)
    # float64 runs: X and dx (to check the Double path to ~1e-12).
    for net, relax, s, n in [("bitonic", "cauchy", 100.0, 49), ("odd_even", "gaussian", 100.0, 49),
                             ("bitonic", "logistic_phi", 100.0, 49), ("bitonic", "logistic_phi", 10.0, 5)]:
        name = f"{net}_{relax}_s{int(s)}_n{n}"
        x, X, xs, dx = sort_case(torch, DiffSortNet, net, relax, s, n, inputs[n], torch.float64)
        tensors[name + ".x_f64"] = x
        tensors[name + ".X_f64"] = X
        tensors[name + ".dx_f64"] = dx
    common.save_fixture(common.fixture_path("neco", "softsort.safetensors"), tensors,
                        {"cases": cases, "gradient": "dx = d/dx sum(X * G), G[k] = sin(0.37 k + 0.1)",
                         "diffsort": "0.2.0", "torch": torch.__version__})


# ---------------------------------------------------------------------------------------------
# ROI Align (torchvision)
# ---------------------------------------------------------------------------------------------

def make_roi(torch):
    from torchvision.ops import roi_align

    gen = torch.Generator().manual_seed(600)
    maps = {
        # name: (N, C, H, W, pooled (ph, pw), boxes [image, x1, y1, x2, y2])
        "grid7": (2, 8, 7, 7, (7, 7), [
            [0, 0.0, 0.0, 7.0, 7.0],          # whole map: 1 sample per bin
            [1, -0.3, -0.2, 7.4, 7.3],        # beyond every border
            [0, 2.3, 3.1, 2.6, 3.5],          # smaller than a cell
            [1, 5.5, 0.0, 7.0, 1.2],          # at the right and top borders
            [0, 1.2, 0.7, 5.9, 6.4],          # a typical partner box
            [1, 0.0, 0.0, 0.5, 0.5],          # tiny, in the corner
            [0, 3.0, 3.0, 3.0, 4.0],          # zero width: no samples, output 0
            [1, 6.9, 6.9, 7.0, 7.0],          # tiny, in the far corner
        ]),
        "grid37": (2, 8, 37, 37, (7, 7), [
            [0, 0.0, 0.0, 37.0, 37.0],        # 6x6 samples per bin
            [1, 0.4, 10.2, 36.9, 37.0],       # at the bottom border
            [0, 12.3, 5.5, 14.1, 6.2],        # small: 1x1 samples
            [1, 20.0, 20.0, 21.0, 21.0],      # one cell
            [0, -0.5, -0.5, 3.0, 3.0],        # beyond the top-left border
            [1, 30.2, 2.0, 37.0, 15.8],       # 1x2 samples, at the right border
        ]),
        "rect5x9": (1, 4, 5, 9, (2, 3), [
            [0, 0.0, 0.0, 9.0, 5.0],
            [0, 1.5, 0.25, 8.75, 4.5],
            [0, 8.0, 4.0, 9.5, 5.5],
        ]),
    }
    tensors = {}
    for name, (n, c, h, w, pooled, boxes) in maps.items():
        f = torch.randn(n, c, h, w, generator=gen, dtype=torch.float32).requires_grad_(True)
        b = torch.tensor(boxes, dtype=torch.float32)
        out = roi_align(f, b, pooled, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        g = formula_grad(torch, tuple(out.shape), torch.float32)
        (out * g).sum().backward()
        tensors[name + ".features"] = f.detach().permute(0, 2, 3, 1).contiguous()   # (N, H, W, C)
        tensors[name + ".boxes"] = b                                              # (R, 5)
        tensors[name + ".out"] = out.detach().permute(0, 2, 3, 1).contiguous()     # (R, PH, PW, C)
        tensors[name + ".dout"] = g.permute(0, 2, 3, 1).contiguous()               # (R, PH, PW, C)
        tensors[name + ".dfeatures"] = f.grad.permute(0, 2, 3, 1).contiguous()     # (N, H, W, C)
        tensors[name + ".pooled"] = np.array(pooled, dtype=np.int64)
    common.save_fixture(common.fixture_path("neco", "roi_align.safetensors"), tensors,
                        {"call": "roi_align(f, boxes, pooled, spatial_scale=1, sampling_ratio=-1, aligned=True)",
                         "torchvision": __import__("torchvision").__version__})


# ---------------------------------------------------------------------------------------------
# Crop geometry and boxes (NeCo's neco_transforms.py)
# ---------------------------------------------------------------------------------------------

def sample_crop(rng, W, H, scale):
    """torchvision RandomResizedCrop.get_params with numpy randomness; returns [x1, y1, x2, y2]."""
    area = W * H
    lr = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*lr))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= W and 0 < h <= H:
            top = int(rng.integers(0, H - h + 1))
            left = int(rng.integers(0, W - w + 1))
            return [left, top, left + w, top + h]
    raise RuntimeError("fallback not expected for these sizes")


def sample_crop_set(rng, W, H, n_global=2, n_local=4):
    """NeCo's overlap rejection rule (NECO-SPEC §3.2)."""
    import torch

    scales = [(0.25, 1.0)] * n_global + [(0.05, 0.25)] * n_local
    boxes = torch.zeros(n_global + n_local, 4)
    for i, sc in enumerate(scales):
        b = sample_crop(rng, W, H, sc)
        if i > 0:
            while True:
                bbox = torch.Tensor(b)
                prev = boxes[:min(i, n_global)]
                lt = torch.max(bbox[None, None, :2], prev[:, :2])
                rb = torch.min(bbox[None, None, 2:], prev[:, 2:])
                wh = (rb - lt).clamp(min=0)
                inter = wh[:, :, 0] * wh[:, :, 1]
                m = int((W * H) * 0.01)
                if i < n_global:
                    m *= 2
                if not torch.all(inter > m):
                    b = sample_crop(rng, W, H, sc)
                else:
                    break
        boxes[i] = torch.Tensor(b)
    return boxes


def calculate_bboxes(torch, crop_bboxes, size_crops, nmb_crops):
    """Verbatim logic of NeCoTransforms.calculate_bboxes (float32 tensors)."""
    gc_bboxes = crop_bboxes[:nmb_crops[0]]
    left_top = torch.max(gc_bboxes[:, None, :2], crop_bboxes[:, :2])
    right_bottom = torch.min(gc_bboxes[:, None, 2:], crop_bboxes[:, 2:])
    assert torch.all((right_bottom - left_top) > 0)
    ws_hs = torch.stack((crop_bboxes[:, 2] - crop_bboxes[:, 0], crop_bboxes[:, 3] - crop_bboxes[:, 1])).T[:, None]
    crops_sizes = torch.repeat_interleave(torch.Tensor([size_crops[0]]), nmb_crops[0] * 2).reshape(nmb_crops[0], 2)
    lc_crops_sizes = torch.repeat_interleave(torch.Tensor([size_crops[1]]), nmb_crops[1] * 2).reshape(nmb_crops[1], 2)
    crops_sizes = torch.cat((crops_sizes, lc_crops_sizes))[:, None]
    x1s_y1s = crop_bboxes[:, None, :2]
    left_top_scaled_gc = crops_sizes[:2] * ((left_top - x1s_y1s[:2]) / ws_hs[:2])
    right_bottom_scaled_gc = crops_sizes[:2] * ((right_bottom - x1s_y1s[:2]) / ws_hs[:2])
    left_top_otc = torch.stack([left_top[i] for i in range(nmb_crops[0])], dim=1)
    right_bottom_otc = torch.stack([right_bottom[i] for i in range(nmb_crops[0])], dim=1)
    left_top_scaled_otc = crops_sizes * ((left_top_otc - x1s_y1s) / ws_hs)
    right_bottom_scaled_otc = crops_sizes * ((right_bottom_otc - x1s_y1s) / ws_hs)
    gc = torch.cat((left_top_scaled_gc, right_bottom_scaled_gc), dim=2)
    otc = torch.cat((left_top_scaled_otc, right_bottom_scaled_otc), dim=2)
    return gc, otc


def make_boxes(torch):
    rng = np.random.default_rng(700)
    sizes = [(160, 120), (100, 140), (640, 480), (333, 500), (50, 50)]
    crops, gcs, alls, dims = [], [], [], []
    for (W, H) in sizes:
        for size_crops in ((224, 98), (518, 98)):
            cb = sample_crop_set(rng, W, H)
            gc, otc = calculate_bboxes(torch, cb, size_crops, (2, 4))
            crops.append(cb)
            gcs.append(gc)
            alls.append(otc)
            dims.append([W, H, size_crops[0], size_crops[1]])
    common.save_fixture(common.fixture_path("neco", "boxes.safetensors"), {
        "crops": torch.stack(crops),          # (S, 6, 4) original pixels [x1, y1, x2, y2]
        "gc": torch.stack(gcs),               # (S, 2, 6, 4)
        "all": torch.stack(alls),             # (S, 6, 2, 4)
        "dims": np.array(dims, dtype=np.int64),  # (S, 4): W, H, global size, local size
    }, {"source": "NeCoTransforms.calculate_bboxes (vpariza/NeCo 3932160), float32"})


# ---------------------------------------------------------------------------------------------
# NeCo loss (official formulation)
# ---------------------------------------------------------------------------------------------

def smooth_field(rng, E, W, H, waves=6):
    """A random smooth vector field over the original image, (E,) at pixel (x, y)."""
    fx = rng.uniform(0.5, 3.0, (waves, E)) / W * 2 * math.pi
    fy = rng.uniform(0.5, 3.0, (waves, E)) / H * 2 * math.pi
    ph = rng.uniform(0, 2 * math.pi, (waves, E))
    amp = rng.standard_normal((waves, E))
    bias = 0.3 * rng.standard_normal(E)

    def at(x, y):  # x, y: arrays of the same shape -> (..., E)
        v = np.zeros(x.shape + (E,))
        for k in range(waves):
            v += amp[k] * np.sin(fx[k] * x[..., None] + fy[k] * y[..., None] + ph[k])
        return v + bias
    return at


def crop_maps(field, crop, grid, noise, rng):
    """Feature map (grid, grid, E) of a crop: the field at the patch centres + noise, L2-normalised."""
    x1, y1, x2, y2 = [float(v) for v in crop]
    c = (np.arange(grid) + 0.5) / grid
    xs = x1 + c[None, :] * (x2 - x1) * np.ones((grid, 1))
    ys = y1 + c[:, None] * (y2 - y1) * np.ones((1, grid))
    f = field(xs, ys)
    f = f + noise * rng.standard_normal(f.shape)
    return f / np.linalg.norm(f, axis=-1, keepdims=True)


def compute_knn_perm_mat(torch, F, src, tgt, sorter):
    bs, d, ps, _ = src.shape
    s = src.permute(0, 2, 3, 1).reshape(bs, ps * ps, d)
    t = tgt.permute(0, 2, 3, 1).reshape(bs, ps * ps, d)
    dist = torch.einsum('bhc,bwc->bhw', F.normalize(s, dim=-1), F.normalize(t, dim=-1))
    dist = dist.reshape(-1, dist.shape[-1])
    _, perm = sorter(dist)
    return perm.reshape(bs, ps, ps, ps * ps, ps * ps).permute(0, 4, 3, 1, 2)


def knn_loss(torch, T, Sg, Sl, gc_boxes, all_boxes, perms, bs, G, g, patch, sorter_s, sorter_t, nmb=(2, 4)):
    """vpariza/NeCo src/neco.py knn_loss (loss_mask 'all', batch references with given permutations)."""
    from torchvision.ops import roi_align
    import torch.nn.functional as F

    total = sum(nmb)
    loss = 0
    pair_losses = []
    pair = 0
    for i, crop_id in enumerate(range(nmb[0])):
        emb_gc = T[bs * G ** 2 * crop_id:bs * G ** 2 * (crop_id + 1)]
        emb = emb_gc.reshape(bs, G, G, -1).permute(0, 3, 1, 2)
        boxes = torch.unbind(gc_boxes[:, crop_id] / patch)
        aligned_emb_gc = roi_align(emb, boxes, 7, aligned=True)
        subloss = 0
        for v in np.delete(np.arange(total), crop_id):
            if v < nmb[0]:
                out = Sg[bs * G ** 2 * v:bs * G ** 2 * (v + 1)]
                res = G
            else:
                li = v - nmb[0]
                out = Sl[bs * g ** 2 * li:bs * g ** 2 * (li + 1)]
                res = g
            aligned_out = roi_align(out.reshape(bs, res, res, -1).permute(0, 3, 1, 2),
                                    torch.unbind(all_boxes[:, v, crop_id].unsqueeze(1) / patch), 7, aligned=True)
            sel = aligned_emb_gc[v::total]
            bsl, d, p1, p2 = sel.shape
            filtered = sel.permute(0, 2, 3, 1).flatten(0, 2)
            repeats = round((bsl * p1 * p2) / filtered.shape[0]) + 1
            tgt = filtered.repeat(repeats, 1)[:bsl * p1 * p2]
            tgt = tgt[perms[pair]].reshape(bsl, p1, p2, d).permute(0, 3, 1, 2)
            p = compute_knn_perm_mat(torch, F, aligned_out, tgt, sorter_s)
            with torch.no_grad():
                q = compute_knn_perm_mat(torch, F, sel, tgt, sorter_t)
            ell = -torch.mean(torch.sum(q * torch.log(p), dim=1))
            pair_losses.append(ell.detach() / (total - 1) / nmb[0])
            subloss += ell
            pair += 1
        loss += subloss / (total - 1)
    loss /= nmb[0]
    return loss, torch.stack(pair_losses)


def make_loss_case(torch, name, seed, bs, E, size_g, size_l, net, relax, steep, tensors, meta):
    from diffsort import DiffSortNet

    rng = np.random.default_rng(seed)
    patch = 14
    G, g = size_g // patch, size_l // patch
    imgs = [(int(rng.integers(120, 400)), int(rng.integers(120, 400))) for _ in range(bs)]
    crop_sets, gcs, alls = [], [], []
    for (W, H) in imgs:
        cb = sample_crop_set(rng, W, H)
        gc, otc = calculate_bboxes(torch, cb, (size_g, size_l), (2, 4))
        crop_sets.append(cb)
        gcs.append(gc)
        alls.append(otc)
    gc_boxes, all_boxes = torch.stack(gcs), torch.stack(alls)
    # Feature maps: a smooth field per image seen through each crop; teacher and student differ by noise.
    T = np.zeros((2, bs, G, G, E))
    Sg = np.zeros((2, bs, G, G, E))
    Sl = np.zeros((4, bs, g, g, E))
    for b, (W, H) in enumerate(imgs):
        field = smooth_field(rng, E, W, H)
        for c in range(2):
            T[c, b] = crop_maps(field, crop_sets[b][c], G, 0.15, rng)
            Sg[c, b] = crop_maps(field, crop_sets[b][c], G, 0.4, rng)
        for c in range(4):
            Sl[c, b] = crop_maps(field, crop_sets[b][2 + c], g, 0.4, rng)
    t = torch.from_numpy(T.reshape(-1, E)).float()
    sg = torch.from_numpy(Sg.reshape(-1, E)).float().requires_grad_(True)
    sl = torch.from_numpy(Sl.reshape(-1, E)).float().requires_grad_(True)
    perm_gen = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(bs * 49, generator=perm_gen) for _ in range(10)])
    sorter = DiffSortNet(net, 49, steepness=steep, distribution=relax)
    loss, pair_losses = knn_loss(torch, t, sg, sl, gc_boxes, all_boxes, perms, bs, G, g, patch, sorter, sorter)
    loss.backward()
    p = name + "."
    tensors[p + "teacher_global"] = t.reshape(2 * bs, G, G, E)
    tensors[p + "student_global"] = sg.detach().reshape(2 * bs, G, G, E)
    tensors[p + "student_local"] = sl.detach().reshape(4 * bs, g, g, E)
    tensors[p + "gc"] = gc_boxes
    tensors[p + "all"] = all_boxes
    tensors[p + "perms"] = perms
    tensors[p + "loss"] = loss.detach().reshape(1)
    tensors[p + "pair_losses"] = pair_losses
    tensors[p + "d_student_global"] = sg.grad.reshape(2 * bs, G, G, E)
    tensors[p + "d_student_local"] = sl.grad.reshape(4 * bs, g, g, E)
    meta[name] = {"batch": bs, "dim": E, "global_size": size_g, "local_size": size_l, "patch": patch,
                  "network": net, "relaxation": relax, "steepness": steep}
    print(f"  {name}: loss {loss.item():.8f}")


def make_loss(torch):
    tensors, meta = {}, {}
    make_loss_case(torch, "default", 800, 2, 16, 224, 98, "bitonic", "cauchy", 100.0, tensors, meta)
    make_loss_case(torch, "oddeven_logistic", 801, 2, 8, 98, 42, "odd_even", "logistic", 10.0, tensors, meta)
    meta["references"] = "batch mode: R = Tq.flatten(0, 2)[perms[pair]] (pairs g-major, v ascending)"
    common.save_fixture(common.fixture_path("neco", "loss.safetensors"), tensors, meta)


# ---------------------------------------------------------------------------------------------
# Photometric augmentation and crop resizing (PIL / torchvision functional ops)
# ---------------------------------------------------------------------------------------------

def synthetic_image(rng, w, h):
    """Smooth colour gradients plus noise, uint8 (H, W, 3)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([
        128 + 100 * np.sin(x / max(w, 1) * 5.0 + 0.3) * np.cos(y / max(h, 1) * 3.0),
        128 + 110 * np.cos(x / max(w, 1) * 2.0 - y / max(h, 1) * 4.0),
        90 + 80 * np.sin((x + y) / max(w + h, 1) * 7.0),
    ], axis=-1)
    img += rng.normal(0, 25, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_augment(torch):
    from PIL import Image, ImageFilter
    import torchvision.transforms.functional as F

    rng = np.random.default_rng(900)
    base = synthetic_image(rng, 29, 23)
    img = Image.fromarray(base, "RGB")
    t = {"input": base.astype(np.float32)}
    ops = []

    def put(name, out):
        t[name] = np.asarray(out, dtype=np.uint8).astype(np.float32)
        ops.append(name)

    for f in (0.35, 1.0, 1.62):
        put(f"brightness_{f}", F.adjust_brightness(img, f))
    for f in (0.4, 1.7):
        put(f"contrast_{f}", F.adjust_contrast(img, f))
    for f in (0.3, 1.8):
        put(f"saturation_{f}", F.adjust_saturation(img, f))
    for f in (-0.17, 0.05, 0.2):
        put(f"hue_{f}", F.adjust_hue(img, f))
    put("grayscale", F.rgb_to_grayscale(img, num_output_channels=3))
    for r in (0.1, 0.77, 1.3, 2.0):
        put(f"blur_{r}", img.filter(ImageFilter.GaussianBlur(radius=r)))
    # Jitter composition in a fixed order (hue, contrast, brightness, saturation).
    j = F.adjust_hue(img, 0.11)
    j = F.adjust_contrast(j, 1.3)
    j = F.adjust_brightness(j, 0.7)
    j = F.adjust_saturation(j, 1.45)
    put("jitter_3102", j)
    # A tiny image where the blur radius exceeds the width.
    tiny = synthetic_image(rng, 3, 5)
    t["tiny_input"] = tiny.astype(np.float32)
    put("tiny_blur_2.0", Image.fromarray(tiny, "RGB").filter(ImageFilter.GaussianBlur(radius=2.0)))
    # RandomResizedCrop's resize: crop (left, top, w, h) of a 120x90 image to 98x98 and 224x224.
    big = synthetic_image(rng, 120, 90)
    t["big_input"] = big.astype(np.float32)
    bimg = Image.fromarray(big, "RGB")
    put("crop_98", F.resized_crop(bimg, 11, 17, 61, 73, [98, 98], F.InterpolationMode.BILINEAR))
    put("crop_42", F.resized_crop(bimg, 3, 5, 80, 95, [42, 42], F.InterpolationMode.BILINEAR))
    import PIL
    common.save_fixture(common.fixture_path("neco", "augment.safetensors"), t,
                        {"ops": ops, "pillow": PIL.__version__,
                         "crop_98": "top 11, left 17, h 61, w 73", "crop_42": "top 3, left 5, h 80, w 95"})


def main():
    torch = common.setup_torch()
    parts = sys.argv[1:] or ["softsort", "roi", "boxes", "loss", "augment"]
    if "softsort" in parts:
        make_softsort(torch)
    if "roi" in parts:
        make_roi(torch)
    if "boxes" in parts:
        make_boxes(torch)
    if "loss" in parts:
        make_loss(torch)
    if "augment" in parts:
        make_augment(torch)


if __name__ == "__main__":
    main()
