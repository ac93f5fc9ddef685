"""What /metrics costs a request with one worker and with several, in-process.

With one worker the predictor's series are in memory; with several (`mlops serve api
--workers N`) prometheus_client's multiprocess mode writes each update to a memory-mapped file
and a scrape reads every worker's files. This times, in a fresh process per mode (the library
picks its mode at import):
  - the metric updates one POST /predict makes (request counter, latency histogram, prediction
    counter: the same calls as the middleware and ``Predictor.count``),
  - one /metrics render (``PredictorMetrics.render``) after those requests.

    python benchmarks/metrics.py [--requests 100000] [--rounds 5]

Not a test: figures depend on the machine. Record them in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MODES = ("memory (1 worker)", "files (N workers)")


def child(requests: int, rounds: int) -> dict[str, float]:
    """Runs in the fresh process: the best of ``rounds``, in CPU time (steadier than wall time
    on a shared machine)."""
    from mlops_stack.serving.metrics import PredictorMetrics

    metrics = PredictorMetrics(queue_depth=lambda: 0)

    def one_request() -> None:
        metrics.requests.labels("/predict", "POST", "200").inc()
        metrics.latency.labels("/predict").observe(0.004)
        metrics.predictions.labels("1", "0").inc()

    per_request = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(requests):
            one_request()
        per_request.append((time.process_time() - start) / requests)
    renders = []
    for _ in range(rounds * 20):
        start = time.process_time()
        metrics.render()
        renders.append(time.process_time() - start)
    return {"update_us": min(per_request) * 1e6, "render_ms": min(renders) * 1e3}


def measure(mode: str, requests: int, rounds: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
        if mode == MODES[1]:
            env["PROMETHEUS_MULTIPROC_DIR"] = directory
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--requests", str(requests)]
            + ["--rounds", str(rounds)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="updates timed per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is reported")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.requests, args.rounds)))
        return
    results = {mode: measure(mode, args.requests, args.rounds) for mode in MODES}
    print(f"{args.requests} simulated /predict requests, best of {args.rounds} rounds")
    print(f"{'series in':22} {'us per request':>15} {'ms per scrape':>14}")
    for mode, result in results.items():
        print(f"{mode:22} {result['update_us']:15.2f} {result['render_ms']:14.3f}")
    extra = results[MODES[1]]["update_us"] - results[MODES[0]]["update_us"]
    print(f"multiprocess mode adds {extra:.2f} us to each request's metric updates")


if __name__ == "__main__":
    main()
