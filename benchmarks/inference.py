"""What one ``ServedModel.predict`` call costs through each inference path, in-process.

Fits the stack's ``linear`` and ``random_forest`` candidates on a seeded 75 % split of the demo
table (breast cancer, 30 numeric features), compiles each to ONNX and verifies it on the other
25 % exactly as the predictor does at load (``serving.compiled.choose``), then times
``ServedModel.predict`` on 1 and 32 validated rows (what a single /predict and a micro-batch
hand it) through the verified session and through the pipeline (the same object with
``compiled=None``), interleaved: each figure is the best of ``--repeats`` rounds of ``--calls``
calls, in milliseconds per call. Pin it for steadier figures:

    taskset -c 0 python benchmarks/inference.py

Not a test: the figures go to docs/serving.md ("Inference path").
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from mlops_stack import training
from mlops_stack.data import BUILTIN_DATASET, infer_schema, load_dataset
from mlops_stack.serving.compiled import choose
from mlops_stack.serving.model import ServedModel, category_checks
from mlops_stack.serving.schema import FeatureField, build_features_model, build_request_models


def served(candidate: str) -> tuple[ServedModel, list[dict[str, float]]]:
    """The candidate fitted, compiled and verified as the predictor loads it; holdout rows."""
    dataset = load_dataset(BUILTIN_DATASET, "target")
    schema = infer_schema(dataset)
    split = training.split_data(
        dataset.features, dataset.labels, test_size=0.25, seed=0, task=schema.task
    )
    (pipeline,) = training.build_candidates(schema, seed=0, names=[candidate]).values()
    pipeline.fit(split.X_train, split.y_train)
    fields = [FeatureField(str(c), "double", True) for c in split.X_test.columns]
    compiled, choice = choose(
        pipeline, fields, schema.task, sample=split.X_test, verified_on="holdout", tolerance=1e-5
    )
    print(f"{candidate}: {choice}")
    features = build_features_model(fields)
    single, batch = build_request_models(features, 1000)
    now = datetime.now(UTC).isoformat()
    model = ServedModel(
        name=candidate,
        version="1",
        run_id="-",
        pipeline=pipeline,
        task=schema.task,
        fields=fields,
        features_model=features,
        predict_request=single,
        batch_request=batch,
        classes=list(pipeline.classes_),
        category_checks=category_checks(schema, fields),
        metrics={},
        trained_at=now,
        loaded_at=now,
        schema=schema,
        compiled=compiled,
        inference=choice,
    )
    return model, split.X_test.to_dict("records")


def best_ms(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"ms per ServedModel.predict call, best of {args.repeats} x {args.calls} calls")
    print("| model | rows | onnx | sklearn | sklearn / onnx |\n|---|---|---|---|---|")
    for candidate in ("linear", "random_forest"):
        model, rows = served(candidate)
        pipeline = dataclasses.replace(model, compiled=None)
        for n in (1, 32):
            batch = rows[:n]
            assert model.predict(batch)[0].prediction == pipeline.predict(batch)[0].prediction
            times: dict[str, list[float]] = {"onnx": [], "sklearn": []}
            calls = args.calls if candidate == "linear" else max(args.calls // 5, 10)
            for _ in range(args.repeats):  # interleaved: drift in load hits both alike
                times["onnx"].append(best_ms(partial(model.predict, batch), calls))
                times["sklearn"].append(best_ms(partial(pipeline.predict, batch), calls))
            onnx, sklearn = min(times["onnx"]), min(times["sklearn"])
            print(f"| {candidate} | {n} | {onnx:.3f} | {sklearn:.3f} | {sklearn / onnx:.1f}x |")


if __name__ == "__main__":
    main()
