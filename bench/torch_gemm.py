"""PyTorch's matrix product at the Llama step's largest shapes, for npm run bench:train: the best of four runs of
x [M, K] @ w [N, K]^T (as nn.Linear multiplies) for each N given, on Debian's python3-torch (its BLAS, OpenBLAS there).
usage: torch_gemm.py THREADS M K N [N ...]
Prints one JSON line: the best rate over the shapes, in GFLOP/s, and each shape's."""
import json, sys, time

import torch

threads, m, k, *ns = map(int, sys.argv[1:])
torch.set_num_threads(threads)
torch.manual_seed(3)
rates = {}
with torch.no_grad():
    for n in ns:
        x, w = torch.randn(m, k), torch.randn(n, k)
        best = 0.0
        for _ in range(4):
            started = time.perf_counter()
            torch.nn.functional.linear(x, w)
            best = max(best, 2 * m * k * n / (time.perf_counter() - started) / 1e9)
        rates[f"{m}x{k}x{n}"] = round(best, 1)
print(json.dumps({"torch": torch.__version__, "threads": threads, "gflops": max(rates.values()), "shapes": rates}))
