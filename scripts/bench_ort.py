#!/usr/bin/env python3
"""ONNX Runtime side of scripts/compare.sh: runs an ONNX file exported by `neco export`.

One intra-op pool of --threads threads, no inter-op parallelism, all graph optimisations on, the
default CPU execution provider. One warm-up run per batch size, then the median of the timed
repeats; peak RSS from ru_maxrss. Prints lines
`ORT batch=B img_per_s=... ms_per_batch=... peak_rss_mib=...`.
"""
import argparse
import resource
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(0)
    for b in [int(v) for v in args.batches.split(",")]:
        x = rng.standard_normal((b, 3, args.size, args.size), dtype=np.float32)
        sess.run(None, {name: x})
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            sess.run(None, {name: x})
            times.append(time.perf_counter() - t0)
        med = sorted(times)[len(times) // 2]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"ORT batch={b} img_per_s={b / med:.3f} ms_per_batch={med * 1000:.1f} peak_rss_mib={rss:.0f}", flush=True)


if __name__ == "__main__":
    main()
