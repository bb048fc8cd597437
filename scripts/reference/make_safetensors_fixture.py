#!/usr/bin/env python3
"""Writes Tests/Fixtures/safetensors/reference.safetensors with Python's `safetensors` (torch API).

The file checks that libneco's SafetensorsFile reads what the reference implementation writes:
F32, F16 and BF16 (special values included), F64, I64, I32, U8, a scalar and an empty tensor, and
`__metadata__`. The expected values are spelled out in Tests/NecoModelTests/SafetensorsTests.swift
(`testReadsPythonWrittenFixture`); keep the two in sync. Needed only to regenerate the fixture:

    python scripts/reference/make_safetensors_fixture.py
"""
import math
import os

import torch
from safetensors.torch import save_file

inf, nan = math.inf, math.nan
tensors = {
    "f32": torch.tensor([[0.0, 1.0, -1.5], [3.25, 1e-7, -65536.5]], dtype=torch.float32),
    # 1, -2, max normal, min subnormal 2^-24, +-inf, nan, fp16(1/3), -0, min normal 2^-14,
    # max subnormal 2^-14 - 2^-24
    "f16": torch.tensor([1.0, -2.0, 65504.0, 2.0**-24, inf, -inf, nan, 1.0 / 3.0, -0.0,
                         2.0**-14, 2.0**-14 - 2.0**-24], dtype=torch.float16),
    # 1, -2, pi rounded to bf16 (3.140625), inf, nan, smallest subnormal 2^-133, -0
    "bf16": torch.tensor([1.0, -2.0, math.pi, inf, nan, 2.0**-133, -0.0], dtype=torch.bfloat16),
    "f64": torch.tensor([0.1, -1e300, 2.5], dtype=torch.float64),
    "i64": torch.tensor([0, -1, 42, 2**40], dtype=torch.int64),
    "i32": torch.tensor([[1, -2], [3, 2**31 - 1]], dtype=torch.int32),
    "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
    "scalar": torch.tensor(7.5, dtype=torch.float32),
    "empty": torch.zeros((0, 3), dtype=torch.float32),
}
metadata = {"format": "pt", "generator": "scripts/reference/make_safetensors_fixture.py"}

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
out = os.path.join(root, "Tests", "Fixtures", "safetensors", "reference.safetensors")
os.makedirs(os.path.dirname(out), exist_ok=True)
save_file(tensors, out, metadata=metadata)
print(out, os.path.getsize(out), "bytes")
