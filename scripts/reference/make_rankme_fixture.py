"""RankMe fixture: Tests/Fixtures/eval/rankme.safetensors.

RankMe (Garrido et al., ICML 2023) computed the way its paper writes it, on PyTorch's SVD:
    s = torch.linalg.svdvals(Z)  (float64, no centring);  p = s / s.sum() + 1e-7
    rankme = exp(-(p * log p).sum())
for small float32 matrices with chosen spectra. libneco computes it from the eigenvalues of the
Gram matrix instead (RankMe.score); the test compares the two. Run with the torch venv:
    /root/.cache/neco-ref/bin/python scripts/reference/make_rankme_fixture.py
"""
import numpy as np
import torch

from common import fixture_path, save_fixture


def rankme(z):
    s = torch.linalg.svdvals(torch.from_numpy(z.astype(np.float64)))
    p = s / s.sum() + 1e-7
    return float(torch.exp(-(p * torch.log(p)).sum()))


def main():
    rng = np.random.default_rng(7)
    cases = {}
    # Gaussian rows with column scales 1 ... 1/24: a spread spectrum.
    cases["spread"] = (rng.standard_normal((200, 24)) * (1.0 / np.arange(1, 25))).astype(np.float32)
    # Rank 3 (a product of 100×3 and 3×16) plus a constant offset (rank ≤ 4: RankMe does not centre).
    cases["rank3"] = (rng.standard_normal((100, 3)) @ rng.standard_normal((3, 16)) + 0.5).astype(np.float32)
    # Fewer rows than columns: at most 5 non-zero singular values.
    cases["wide"] = rng.standard_normal((5, 12)).astype(np.float32)
    # One direction only: every row a multiple of the same vector (RankMe ≈ 1).
    cases["collapsed"] = (rng.standard_normal((64, 1)) @ rng.standard_normal((1, 10))).astype(np.float32)
    tensors, meta = {}, {}
    for name, z in cases.items():
        tensors[name] = z
        meta[name] = repr(rankme(z))
    save_fixture(fixture_path("eval", "rankme.safetensors"), tensors, metadata=meta)


if __name__ == "__main__":
    main()
