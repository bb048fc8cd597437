"""Generate the NecoImage reference fixtures: Tests/Fixtures/image/.

Run (from anywhere; takes a second):

    /root/.cache/neco-ref/bin/python scripts/reference/make_image_fixtures.py

Needs Pillow and numpy; torch + torchvision for the preprocessing references (torchvision is
imported with common.import_timm()'s workaround for the CPU torch wheel). Everything is seeded;
rerunning reproduces the files byte for byte (for a given Pillow / libjpeg-turbo / zlib).

What it writes (all pictures are small; the whole folder stays well under 300 KB):

* source pictures, each made deterministically from one 61x47 gradient+noise image `base`:
  rgb.png, rgba.png (alpha varies, some pixels fully transparent), gray.png, la.png,
  palette.png (64 colours, one transparent index -> tRNS), bw.png (1-bit), rgb16.png (16-bit RGB,
  written by hand: high bytes = base, low bytes random), gamma.png (RGB + gAMA 1.0, which Pillow
  ignores), interlaced.png (Adam7, written by hand), rgb_q90.jpg (4:2:0), rgb_prog.jpg
  (progressive 4:2:2), gray_q90.jpg, cmyk.jpg (Adobe CMYK).
* `*.rgb`: raw uint8 (H, W, 3) row-major pixels, no header; sizes are in the manifest.
  Decoded pictures are Pillow's `Image.open(f).convert("RGB")`.
* `*.f32`: raw little-endian float32, layout given in the manifest.
* manifest.txt: one test case a line, whitespace-separated:

      decode     <picture> <expected.rgb> <W> <H>
      resize     <source.rgb> <W> <H> <expected.rgb> <w> <h>       Image.resize((w, h), BILINEAR)
      preprocess <source.rgb> <W> <H> <mode> <a> <b> <expected.rgb> <w> <h>
      normalize  <source.rgb> <W> <H> <expected.f32>                 (3, H, W) ImageNet-normalised

  `preprocess` modes: `shortSideCrop <size> 0` = torchvision Resize(size) + CenterCrop(size);
  `fitMultiple <maxSide> <multiple>` = Pillow resize to the size given by the NecoImage rule
  (longer side -> maxSide, each side rounded to the nearest multiple, halves away from zero).
  `normalize` = torchvision ToTensor() + Normalize(ImageNet mean, std), float32 on the CPU.
"""
import os
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image, PngImagePlugin

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT = os.path.join(common.FIXTURES, "image")
W, H = 61, 47
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

manifest = [f"# neco image fixtures v1 (scripts/reference/make_image_fixtures.py, Pillow {PIL.__version__})"]


def path(name):
    return os.path.join(OUT, name)


def write_bytes(name, data):
    with open(path(name), "wb") as f:
        f.write(data)


def write_rgb(name, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    assert arr.ndim == 3 and arr.shape[2] == 3
    write_bytes(name, arr.tobytes())
    return name


def pillow_rgb(name):
    """Pillow's decode of a written picture, as (H, W, 3) uint8."""
    with Image.open(path(name)) as im:
        return np.asarray(im.convert("RGB"))


def make_base():
    rng = np.random.RandomState(20240611)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    r = x * 255.0 / (W - 1)
    g = y * 255.0 / (H - 1)
    b = ((x + 2 * y) * 5.0) % 256
    img = np.stack([r, g, b], axis=-1) + rng.randint(-40, 41, size=(H, W, 3))
    img[10:20, 30:45] = [250, 10, 128]  # a hard-edged block
    img[30:33, :] = 255                 # a white bar
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), rng


# ---- hand-written PNGs (Pillow cannot write 16-bit RGB or interlaced PNGs) -------------------

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_file(width, height, bit_depth, color_type, raw_scanlines, interlace=0):
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw_scanlines, 9)) + png_chunk(b"IEND", b""))


def scanlines(arr):
    """Filter type 0 for every row of an (h, w, bytes) uint8 array."""
    rows = arr.reshape(arr.shape[0], -1)
    return b"".join(b"\x00" + row.tobytes() for row in rows)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(path(f))
    base, rng = make_base()

    # ---- PNG sources ----------------------------------------------------------------------
    Image.fromarray(base, "RGB").save(path("rgb.png"))
    alpha = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    alpha[:, :5] = 0  # fully transparent but coloured: Pillow keeps the colour when dropping alpha
    Image.fromarray(np.dstack([base, alpha]), "RGBA").save(path("rgba.png"))
    gray = np.asarray(Image.fromarray(base, "RGB").convert("L"))
    Image.fromarray(gray, "L").save(path("gray.png"))
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(path("la.png"))
    pal = Image.fromarray(base, "RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal.save(path("palette.png"), transparency=3)
    Image.fromarray(gray > 127).save(path("bw.png"))
    low = rng.randint(0, 256, size=(H, W, 3)).astype(np.uint16)
    rgb16 = (base.astype(np.uint16) << 8) | low
    write_bytes("rgb16.png", png_file(W, H, 16, 2, scanlines(rgb16.astype(">u2").view(np.uint8))))
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 100000))  # gamma 1.0: libpng's simplified API would convert
    Image.fromarray(base, "RGB").save(path("gamma.png"), pnginfo=info)
    passes = b"".join(scanlines(base[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7
                      if base[y0::dy, x0::dx].size)
    write_bytes("interlaced.png", png_file(W, H, 8, 2, passes, interlace=1))

    # ---- JPEG sources ---------------------------------------------------------------------
    Image.fromarray(base, "RGB").save(path("rgb_q90.jpg"), quality=90)
    Image.fromarray(base, "RGB").save(path("rgb_prog.jpg"), quality=85, progressive=True, subsampling=1)
    Image.fromarray(gray, "L").save(path("gray_q90.jpg"), quality=90)
    Image.fromarray(base, "RGB").convert("CMYK").save(path("cmyk.jpg"), quality=90)

    # ---- decode expectations (shared where Pillow's result is the same picture) -------------
    expected = {}
    for name in ["rgb.png", "rgba.png", "gray.png", "la.png", "palette.png", "bw.png", "rgb16.png",
                 "gamma.png", "interlaced.png", "rgb_q90.jpg", "rgb_prog.jpg", "gray_q90.jpg", "cmyk.jpg"]:
        arr = pillow_rgb(name)
        assert arr.shape == (H, W, 3), name
        key = arr.tobytes()
        if key not in expected:
            expected[key] = write_rgb(name.replace(".", "_") + ".rgb", arr)
        manifest.append(f"decode {name} {expected[key]} {W} {H}")
    assert expected[base.tobytes()] == "rgb_png.rgb"
    for same in ["rgba.png", "rgb16.png", "gamma.png", "interlaced.png"]:
        assert np.array_equal(pillow_rgb(same), base), same

    # ---- resize: Pillow BILINEAR (antialiased) ----------------------------------------------
    # Pillow 13 runs the vertical pass first when H - h > 2 (W - w) (PR #9549): 128x9 and 48x20
    # take that path, 47x20 is the first size on the other side of the boundary.
    jpeg = pillow_rgb("rgb_q90.jpg")
    cases = [("rgb_png.rgb", base, s) for s in
             [(14, 28), (23, 17), (97, 80), (61, 20), (30, 47), (5, 3), (1, 1), (128, 9), (7, 100),
              (48, 20), (47, 20)]]
    cases += [("rgb_q90_jpg.rgb", jpeg, s) for s in [(32, 24), (90, 70)]]
    for src_name, src, (w, h) in cases:
        out = np.asarray(Image.fromarray(src, "RGB").resize((w, h), Image.Resampling.BILINEAR))
        name = write_rgb(f"resize_{src_name.split('.')[0]}_{w}x{h}.rgb", out)
        manifest.append(f"resize {src_name} {W} {H} {name} {w} {h}")

    # ---- preprocessing: torchvision on PIL images -------------------------------------------
    common.setup_torch()
    common.import_timm()  # makes torchvision importable next to the CPU torch
    import torchvision.transforms as T

    for size in [28, 40, 47]:
        tv = T.Compose([T.Resize(size), T.CenterCrop(size)])(Image.fromarray(base, "RGB"))
        out = np.asarray(tv)
        # The documented formula must agree with torchvision.
        short, long = min(W, H), max(W, H)
        new_long = int(size * long / short)
        rw, rh = (size, new_long) if W <= H else (new_long, size)
        resized = np.asarray(Image.fromarray(base, "RGB").resize((rw, rh), Image.Resampling.BILINEAR))
        top, left = int(round((rh - size) / 2.0)), int(round((rw - size) / 2.0))
        assert np.array_equal(out, resized[top:top + size, left:left + size]), size
        name = write_rgb(f"prep_short_{size}.rgb", out)
        manifest.append(f"preprocess rgb_png.rgb {W} {H} shortSideCrop {size} 0 {name} {size} {size}")

    for max_side, multiple in [(40, 14), (100, 14), (20, 16)]:
        long = max(W, H)

        def fit(side):
            q = side * max_side / long / multiple
            return max(multiple, int(np.floor(q + 0.5)) * multiple)  # halves away from zero (q > 0)

        w, h = fit(W), fit(H)
        out = np.asarray(Image.fromarray(base, "RGB").resize((w, h), Image.Resampling.BILINEAR))
        name = write_rgb(f"prep_fit_{max_side}_{multiple}.rgb", out)
        manifest.append(f"preprocess rgb_png.rgb {W} {H} fitMultiple {max_side} {multiple} {name} {w} {h}")

    norm = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    src = np.fromfile(path("prep_short_28.rgb"), np.uint8).reshape(28, 28, 3)
    t = norm(Image.fromarray(src, "RGB")).numpy().astype("<f4")
    assert t.shape == (3, 28, 28)
    write_bytes("norm_prep_short_28.f32", t.tobytes())
    manifest.append("normalize prep_short_28.rgb 28 28 norm_prep_short_28.f32")

    write_bytes("manifest.txt", ("\n".join(manifest) + "\n").encode())
    total = sum(os.path.getsize(path(f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
