"""Golden values for experiments/stats.test.ts, from SciPy (scipy.stats.ttest_rel) and Holm's step-down written out
plainly. Run: python3 experiments/golden_stats.py"""
import json
from scipy import stats

pairs = [
    ([0.71, 0.65, 0.80, 0.62, 0.74], [0.60, 0.61, 0.66, 0.58, 0.70]),
    ([0.50, 0.52, 0.49, 0.55, 0.47, 0.51, 0.53], [0.51, 0.50, 0.52, 0.50, 0.49, 0.52, 0.50]),
    ([0.3, 0.9, 0.4], [0.2, 0.1, 0.5]),
]
tests = []
for a, b in pairs:
    r = stats.ttest_rel(a, b)
    tests.append({"a": a, "b": b, "t": float(r.statistic), "df": len(a) - 1, "p": float(r.pvalue)})


def holm(ps):
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


ps = [0.01, 0.04, 0.03, 0.005, 0.2]
print(json.dumps({"ttest_rel": tests, "holm": {"p": ps, "adjusted": holm(ps)}}, indent=1))
