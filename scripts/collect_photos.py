#!/usr/bin/env python3
"""Collects the real photos that the main job post-pretrains on: natural colour photos shipped
in Debian's opencv-doc and in the scikit-image wheel (the same pinned packages that
build_benchmark.py downloads; see docs/EVAL.md and ../shared/docs/OFFLINE-DATA.md).

The photos are written unchanged (JPEG bytes as shipped, PNGs as shipped) to
$NECO_CACHE/train-photos (default ~/.cache/neco/train-photos) with a manifest.json naming each
file's package, version and sha256. Logos, charts, chessboards, text and gray images are left
out. Idempotent: does nothing when the manifest is current.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build_benchmark import DEBS, WHEELS, deb_members, fetch_deb, fetch_wheel, say  # noqa: E402

VERSION = 2
# Natural colour photos in opencv-doc's examples/data (scenes, objects, people, animals).
OPENCV_PHOTOS = ["aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
                 "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png",
                 "home.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png",
                 "squirrel_cls.jpg", "stuff.jpg"]
SKIMAGE_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg"]


def main():
    home = os.environ.get("HOME", ".")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=os.environ.get("NECO_CACHE") or os.path.join(home, ".cache", "neco"))
    args = ap.parse_args()
    out = os.path.join(args.cache, "train-photos")
    manifest_path = os.path.join(out, "manifest.json")
    try:
        with open(manifest_path) as f:
            if json.load(f).get("version") == VERSION:
                say(f"up to date: {out}")
                return
    except (OSError, ValueError):
        pass
    downloads = os.path.join(args.cache, "downloads")
    os.makedirs(downloads, exist_ok=True)
    deb = fetch_deb("opencv-doc", DEBS["opencv-doc"], downloads)
    whl = fetch_wheel("scikit-image", WHEELS["scikit-image"], downloads)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    files = []
    root = "./usr/share/doc/opencv-doc/examples/data/"
    wanted = set(OPENCV_PHOTOS)
    for path, data in deb_members(deb, lambda p: p.startswith(root) and p[len(root):] in wanted):
        name = "opencv_" + path[len(root):]
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(data)
        files.append({"file": name, "package": "opencv-doc", "version": DEBS["opencv-doc"],
                      "sha256": hashlib.sha256(data).hexdigest()})
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            base = os.path.basename(n)
            if n.startswith("skimage/data/") and base in SKIMAGE_PHOTOS:
                data = z.read(n)
                name = "skimage_" + base
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(data)
                files.append({"file": name, "package": "scikit-image", "version": WHEELS["scikit-image"],
                              "sha256": hashlib.sha256(data).hexdigest()})
    if len(files) < 16:
        sys.exit(f"collect_photos: only {len(files)} photos found in the packages")
    files.sort(key=lambda e: e["file"])
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump({"version": VERSION, "photos": files}, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    say(f"wrote {len(files)} photos to {out}")


if __name__ == "__main__":
    main()
