#!/usr/bin/env python3
"""ONNX Runtime parity check and throughput figures for libneco's ONNX export (issue 6).

Needs onnx, onnxruntime and numpy: `scripts/setup.sh --test` installs them into
$NECO_CACHE/venv (default ~/.cache/neco/venv). Run it with that venv's python.

check MANIFEST.json
    Run by `swift test` (Tests/NecoONNXTests/ONNXRuntimeParityTests.swift), which exports the
    models, runs the Swift forward and writes the manifest:
        {"tolerance": 1e-4,
         "models": [{"onnx": "a.onnx", "ir_version": 8, "opset": 17,
                     "outputs": ["patch_tokens", "cls_token", ...]}],
         "cases": [{"name": "...", "onnx": "a.onnx", "input": "x.npy",
                    "expected": {"patch_tokens": "p.npy", ...}}]}
    For every model: onnx.checker.check_model(path, full_check=True), IR version, opset and the
    output names, and no control flow (If / Loop / Scan). For every case: ONNX Runtime (CPU) on the input, max |ORT − Swift| per output
    must be ≤ tolerance. Prints one line per case; exit status 1 on any failure.

bench --onnx MODEL.onnx [--batch 8] [--size 224] [--threads N] [--repeats 5]
      [--neco .build/release/neco] [--model WEIGHTS]
    ONNX Runtime throughput (images/s, median of --repeats runs after one warm-up). With --neco
    it also times `neco export` of the same model (export time, file size) and runs
    `neco bench` at the same batch and size, and prints the numbers side by side.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np


def _imports():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:  # pragma: no cover - message for a missing setup step
        sys.exit(f"onnx_parity: {e}; run scripts/setup.sh --test")


def session(path, threads=None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def check_model(spec, base):
    import onnx

    path = os.path.join(base, spec["onnx"])
    problems = []
    onnx.checker.check_model(path, full_check=True)
    m = onnx.load(path, load_external_data=False)
    if m.ir_version != spec.get("ir_version", 8):
        problems.append(f"ir_version {m.ir_version}")
    opsets = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    if opsets != {"ai.onnx": spec.get("opset", 17)}:
        problems.append(f"opset_import {opsets}")
    names = [o.name for o in m.graph.output]
    if "outputs" in spec and names != spec["outputs"]:
        problems.append(f"outputs {names} != {spec['outputs']}")
    inputs = [i.name for i in m.graph.input]
    if inputs != ["pixel_values"]:
        problems.append(f"inputs {inputs}")
    # Control flow breaks TensorRT and other consumers; the exporter never emits it.
    control = sorted({n.op_type for n in m.graph.node} & set(spec.get("forbid_ops", ["If", "Loop", "Scan"])))
    if control:
        problems.append(f"control-flow nodes {control}")
    status = "ok" if not problems else "FAIL " + "; ".join(problems)
    print(f"model {spec['onnx']}: checker(full_check) ok, IR {m.ir_version}, opset {opsets}, "
          f"{len(m.graph.node)} nodes, {len(m.graph.initializer)} initializers: {status}")
    return not problems


def run_check(manifest_path):
    _imports()
    with open(manifest_path) as f:
        manifest = json.load(f)
    base = os.path.dirname(os.path.abspath(manifest_path))
    tol = float(manifest.get("tolerance", 1e-4))
    ok = True
    for spec in manifest["models"]:
        try:
            ok &= check_model(spec, base)
        except Exception as e:  # checker errors are reported, not raised
            print(f"model {spec['onnx']}: FAIL {type(e).__name__}: {e}")
            ok = False
    sessions = {}
    worst = 0.0
    for case in manifest["cases"]:
        path = os.path.join(base, case["onnx"])
        if path not in sessions:
            sessions[path] = session(path)
        s = sessions[path]
        x = np.load(os.path.join(base, case["input"]))
        names = [o.name for o in s.get_outputs()]
        got = dict(zip(names, s.run(None, {"pixel_values": x})))
        parts = []
        case_ok = True
        for name, npy in case["expected"].items():
            want = np.load(os.path.join(base, npy))
            if name not in got:
                parts.append(f"{name} missing")
                case_ok = False
                continue
            if got[name].shape != want.shape:
                parts.append(f"{name} shape {got[name].shape} != {want.shape}")
                case_ok = False
                continue
            err = float(np.max(np.abs(got[name].astype(np.float64) - want)))
            worst = max(worst, err)
            if not (err <= tol):
                case_ok = False
            parts.append(f"{name} {tuple(want.shape)} max|d|={err:.2e}")
        ok &= case_ok
        print(f"{'ok  ' if case_ok else 'FAIL'} {case['name']}: input {tuple(x.shape)}; " + ", ".join(parts))
    print(f"PARITY {'PASS' if ok else 'FAIL'}: {len(manifest['cases'])} cases, {len(manifest['models'])} models, "
          f"worst max|d| {worst:.2e} (tolerance {tol:g}); onnxruntime {__import__('onnxruntime').__version__}, "
          f"onnx {__import__('onnx').__version__}")
    return 0 if ok else 1


def ort_throughput(path, batch, size, threads, repeats):
    h, w = size
    s = session(path, threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
    s.run(None, {"pixel_values": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        s.run(None, {"pixel_values": x})
        times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    return batch / med, med


def parse_size(s):
    parts = s.lower().split("x")
    return (int(parts[0]), int(parts[-1]))


def run_bench(args):
    _imports()
    size = parse_size(args.size)
    threads = args.threads or os.cpu_count()
    if args.model is None:
        cache = os.environ.get("NECO_CACHE") or os.path.expanduser("~/.cache/neco")
        args.model = os.environ.get("NECO_MODEL") or os.path.join(cache, "models", "dinov2_vits14_imgfocus.safetensors")
    rows = []
    onnx_path = args.onnx
    tmp = None
    if args.neco:
        if onnx_path is None:
            tmp = tempfile.mkdtemp(prefix="neco_onnx_bench_")
            onnx_path = os.path.join(tmp, "model.onnx")
        cmd = [args.neco, "export", "--out", onnx_path, "--size", f"{size[0]}x{size[1]}", "--model", args.model]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        print(out.strip())
        m = re.search(r"EXPORT seconds=([\d.]+) bytes=(\d+)", out)
        if m:
            rows.append(("neco export (ViT, fixed size)", f"{float(m.group(1)):.3f} s",
                         f"{int(m.group(2)) / 1e6:.1f} MB"))
    if onnx_path is None:
        sys.exit("bench: give --onnx or --neco")
    ips, med = ort_throughput(onnx_path, args.batch, size, threads, args.repeats)
    import onnxruntime as ort

    rows.append((f"ONNX Runtime {ort.__version__} CPU, {threads} threads", f"{ips:.2f} img/s", f"{med * 1000:.1f} ms/batch"))
    if args.neco:
        cmd = [args.neco, "bench", "--batches", str(args.batch), "--size", f"{size[0]}x{size[1]}",
               "--repeats", str(args.repeats), "--threads", str(threads), "--model", args.model]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        m = re.search(r"BENCH batch=\d+ img_per_s=([\d.]+) ms_per_batch=([\d.]+)", out)
        if m:
            rows.append((f"Swift forward (neco bench), {threads} threads", f"{float(m.group(1)):.2f} img/s",
                         f"{float(m.group(2)):.1f} ms/batch"))
    print(f"batch {args.batch}, input {size[0]}x{size[1]}")
    for r in rows:
        print(f"  {r[0]:<48} {r[1]:>14} {r[2]:>16}")
    if tmp:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="parity check from a manifest written by the Swift test")
    c.add_argument("manifest")
    b = sub.add_parser("bench", help="ONNX Runtime throughput next to the Swift forward")
    b.add_argument("--onnx", help="exported model (default: export one with --neco)")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--size", default="224")
    b.add_argument("--threads", type=int, default=0, help="intra-op threads (default: all cores)")
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--neco", help="path of the neco CLI (release build) to time export and the Swift forward")
    b.add_argument("--model", help="weights for neco (default: the embedded default model)")
    args = ap.parse_args()
    if args.cmd == "check":
        return run_check(args.manifest)
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
