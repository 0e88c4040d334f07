"""Refit bench.core.cost's GPU coefficients from a run's summary.csv or the seed's summary log.

Usage: PYTHONPATH=. python scripts/fit_cost_model.py \
           ../shared/fixtures/trtllm-bench-0.16-logs/summary_results.log
       PYTHONPATH=. python scripts/fit_cost_model.py results/<run>/summary.csv

Least squares on relative error of total latency = requests x (isl x a + osl x b
+ osl x (isl + osl/2) x c); prints the coefficients and each point's predicted/measured ratio.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def load(path: str) -> pd.DataFrame:
    if path.endswith(".csv"):
        frame = pd.read_csv(path)
        frame = frame[frame.status == "ok"]
        return pd.DataFrame(
            {
                "isl": frame.isl,
                "osl": frame.osl,
                "requests": frame.requests,
                "seconds": frame.total_latency_ms / 1000,
            }
        )
    frame = pd.read_csv(path, skiprows=3, engine="python", on_bad_lines="skip")
    frame = frame[frame.Status == "SUCCESS"]
    return pd.DataFrame(
        {
            "isl": frame.ISL.astype(int),
            "osl": frame.OSL.astype(int),
            "requests": frame.Requests.astype(int),
            "seconds": frame["Latency(ms)"].astype(float) / 1000,
        }
    )


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = load(sys.argv[1])
    n, i, o = (d[c].to_numpy(float) for c in ("requests", "isl", "osl"))
    features = np.stack([n * i, n * o, n * o * (i + o / 2)], axis=1)
    y = d.seconds.to_numpy()
    coef, *_ = np.linalg.lstsq(features / y[:, None], np.ones_like(y), rcond=None)
    ratio = features @ coef / y
    print(
        f"prefill_s_per_token={coef[0]:.3g} decode_s_per_token={coef[1]:.3g} "
        f"attention_s_per_token_pair={coef[2]:.3g}"
    )
    print(f"{len(y)} points; predicted/measured from {ratio.min():.2f} to {ratio.max():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
