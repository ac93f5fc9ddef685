"""``python -m mlops_stack.probe URL``: exit 0 if URL answers 2xx, else 1.

The container healthchecks use it: the image, like python:3.11-slim, has no curl or wget, and
importing only the standard library keeps a probe every few seconds cheap (no MLflow, no
Prefect, no settings).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def probe(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    """Whether ``url`` answers with a 2xx status, and what it answered (for the health log)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (own URL)
            return 200 <= response.status < 300, f"{response.status} {url}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {url}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m mlops_stack.probe URL", file=sys.stderr)
        return 2
    ok, detail = probe(argv[0])
    print(detail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
