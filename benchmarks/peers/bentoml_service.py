"""The champion pipeline behind BentoML 1.4 with adaptive batching, for benchmarks/serve.py.

Run from its own venv (benchmarks/peers/bentoml.txt) as the benchmark does:
``PIPELINE=/path/pipeline.joblib bentoml serve bentoml_service:Classifier --port N``.
A request is ``{"rows": [{feature: value, ...}]}`` (one row per request in the benchmark);
the answer is each row's class probabilities, in ``pipeline.classes_`` order.

``max_latency_ms`` is generous on purpose: BentoML sheds load (503 "process is overloaded")
when it predicts a batch would miss it, and at 10 ms a 5 s run at 32 connections answered
1,773 requests with 503 on a 2-core machine. The benchmark counts non-2xx answers anyway.
"""

from __future__ import annotations

import os

import bentoml
import joblib
import pandas as pd

PIPELINE = os.environ["PIPELINE"]
MAX_BATCH_SIZE = int(os.environ.get("MAX_BATCH_SIZE", "64"))
MAX_LATENCY_MS = int(os.environ.get("MAX_LATENCY_MS", "1000"))


@bentoml.service(workers=1, traffic={"timeout": 30})
class Classifier:
    """One process, like the other servers measured: the pipeline loaded once at start."""

    def __init__(self) -> None:
        self.pipeline = joblib.load(PIPELINE)
        self.columns = list(self.pipeline.feature_names_in_)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, rows: list[dict]) -> list[list[float]]:
        """Rows of concurrent requests arrive here together (adaptive batching): one call."""
        frame = pd.DataFrame(rows, columns=self.columns)
        return self.pipeline.predict_proba(frame).tolist()
