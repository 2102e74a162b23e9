"""Generate examples/data/customers.csv: a small, realistically messy customer-churn table (seeded, offline).

    python examples/data/make_customers.py            # rewrites customers.csv next to this file
    python examples/data/make_customers.py --rows 50 --seed 1 --out new.csv --no-target

What makes it realistic (and what examples/tabular_csv.yaml cleans):

* mixed types: numbers (tenure, age, charges, support calls) and text categories (plan, contract, region,
  paperless billing), plus an id column that is not a feature;
* text categories typed inconsistently: "Basic", " basic", "BASIC ", "Month-to-month", "month-to-month" ...;
* missing cells in numeric (age, monthly_charges) and text (contract, region) columns;
* a few exact duplicate rows (a double export), a few outliers (age 999 as "unknown", charges typed ×100);
* the target `churn` ("yes"/"no", about 32% yes) follows a logistic model of tenure, contract, charges relative
  to the plan's price, support calls and region, so it is learnable but noisy (a Bayes-optimal classifier
  gets roughly 85%, a logistic regression about 83%, predicting "no" for everyone about 68%).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

PLANS = {"Basic": 30.0, "Standard": 60.0, "Premium": 95.0}  # list price per month
CONTRACTS = {"Month-to-month": 1.3, "One year": -0.4, "Two year": -1.6}  # churn log-odds
REGIONS = {"North": 0.0, "South": 0.35, "East": -0.25, "West": 0.1}


def _messy(values: np.ndarray, rng: np.random.Generator, rate: float = 0.25) -> list[str]:
    """Each value, and about `rate` of them retyped: lower/upper case and stray spaces."""
    out = []
    for v in values:
        if rng.random() < rate:
            v = [str.lower, str.upper, lambda s: f" {s}", lambda s: f"{s} ", lambda s: f" {s.lower()} "][
                rng.integers(5)](v)
        out.append(v)
    return out


def make(rows: int = 2000, seed: int = 0, duplicates: int | None = None, outliers: int | None = None
         ) -> pd.DataFrame:
    """`rows` distinct customers plus `duplicates` repeated rows (default 0.6% of rows), with missing values and
    `outliers` rows holding a gross error (default 0.5%)."""
    duplicates = round(rows * 0.006) if duplicates is None else duplicates
    outliers = round(rows * 0.005) if outliers is None else outliers
    rng = np.random.default_rng(seed)
    plan = rng.choice(list(PLANS), rows, p=[0.4, 0.4, 0.2])
    contract = rng.choice(list(CONTRACTS), rows, p=[0.5, 0.3, 0.2])
    region = rng.choice(list(REGIONS), rows)
    # long contracts go with long tenure
    tenure = np.clip(rng.gamma(2.0, 9.0, rows) + np.select(
        [contract == "One year", contract == "Two year"], [10, 20], 0), 1, 72).round().astype(int)
    age = np.clip(rng.normal(45, 14, rows), 18, 85).round()
    price = np.array([PLANS[p] for p in plan])
    monthly = (price + rng.normal(0, 8, rows) + 0.15 * np.minimum(tenure, 40)).clip(10).round(2)
    calls = rng.poisson(1.5 + 1.5 * (monthly > price + 6), rows)
    paperless = rng.choice(["Yes", "No"], rows, p=[0.6, 0.4])

    logit = -1.9 + 1.6 * (-0.06 * tenure + np.array([CONTRACTS[c] for c in contract])
                          + 0.08 * (monthly - price) + 0.35 * calls + np.array([REGIONS[r] for r in region])
                          + 0.3 * (paperless == "Yes") - 0.01 * (age - 45))
    churn = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")

    frame = pd.DataFrame({
        "customer_id": [f"C{100000 + i}" for i in rng.permutation(rows)],
        "tenure_months": tenure,
        "age": age,
        "monthly_charges": monthly,
        "support_calls": calls,
        "plan": _messy(plan, rng),
        "contract": _messy(contract, rng, 0.15),
        "region": _messy(region, rng),
        "paperless_billing": _messy(paperless, rng, 0.1),
        "churn": churn,
    })
    # missing cells: numeric and text columns
    for col, rate in (("age", 0.04), ("monthly_charges", 0.03), ("contract", 0.02), ("region", 0.03)):
        frame.loc[rng.random(rows) < rate, col] = np.nan
    # outliers: "999" typed for an unknown age, charges entered in cents
    bad = rng.choice(rows, outliers, replace=False)
    frame.loc[bad[: outliers // 2], "age"] = 999.0
    frame.loc[bad[outliers // 2:], "monthly_charges"] = (frame.loc[bad[outliers // 2:], "monthly_charges"] * 100)
    # a double export: some rows twice, at random places
    if duplicates:
        frame = pd.concat([frame, frame.iloc[rng.choice(rows, duplicates, replace=False)]])
        frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("customers.csv"))
    parser.add_argument("--no-target", action="store_true", help="leave out the churn column (rows to predict)")
    args = parser.parse_args()
    frame = make(args.rows, args.seed)
    if args.no_target:
        frame = frame.drop(columns="churn")
    frame.to_csv(args.out, index=False)
    print(f"{len(frame)} rows written to {args.out}")


if __name__ == "__main__":
    main()
