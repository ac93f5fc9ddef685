"""Small tables with known structure, for tests that train, serve or monitor a model."""

from __future__ import annotations

import numpy as np
import pandas as pd


def xor_table(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A table a linear model cannot learn (label = sign of x1 * x2) but trees can."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, rows))
    return pd.DataFrame({"x1": x1, "x2": x2, "noise": x3, "label": (x1 * x2 > 0).astype(int)})


def mixed_table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical features with missing values in both kinds."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    income = rng.lognormal(10, 0.5, rows)
    city = rng.choice(["paris", "lyon", "nantes", "lille"], rows)
    plan = rng.choice(["basic", "plus", "premium"], rows, p=[0.5, 0.3, 0.2])
    score = (age - 50) / 15 + (plan == "premium") * 1.5 - (city == "lille") * 1.0
    churn = np.where(score + rng.normal(0, 0.7, rows) > 0, "yes", "no")
    frame = pd.DataFrame({"age": age, "income": income, "city": city, "plan": plan, "churn": churn})
    frame.loc[rng.choice(rows, 25, replace=False), "income"] = np.nan
    frame.loc[rng.choice(rows, 20, replace=False), "city"] = None
    return frame
