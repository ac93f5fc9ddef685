"""What the image's Python environment is made of: the largest installed packages and the
totals by kind of file (bytes as `docker image ls` counts them, not disk blocks).

Runs inside the image, from stdin, so nothing is added to it:

    docker run --rm -i --entrypoint python mlops-stack:0.1.0 - < infrastructure/image/sizes.py
    ... - --top 3 < infrastructure/image/sizes.py      # what compose-e2e.sh prints

A package's share is every file under its directory in site-packages, with the libraries
auditwheel vendored next to it (scipy.libs counts as scipy, pillow.libs as PIL) and the .pyc
written after installation (docs/dependencies.md, "The image").
"""

import argparse
import collections
import importlib.metadata
import os
import sysconfig

KINDS = {".pyc": "bytecode (.pyc)", ".py": "sources (.py)", ".so": "shared objects (.so)"}


def kind_of(name: str) -> str:
    """The kind of file a name is, for the totals."""
    if ".so" in name and (name.endswith(".so") or ".so." in name):
        return KINDS[".so"]
    return KINDS.get(os.path.splitext(name)[1], "other (data, web assets, metadata)")


def vendored_owner() -> dict[str, str]:
    """Normalised distribution name -> its first top-level package (pillow -> PIL)."""
    owner: dict[str, str] = {}
    for package, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            owner.setdefault(dist.lower().replace("-", "_").replace(".", "_"), package)
    return owner


def measure(site: str) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Bytes per top-level package and per kind of file under site-packages."""
    owner = vendored_owner()
    by_package: collections.Counter[str] = collections.Counter()
    by_kind: collections.Counter[str] = collections.Counter()
    for folder, _dirs, files in os.walk(site):
        top = os.path.relpath(folder, site).split(os.sep)[0]
        if top.endswith(".libs"):
            top = owner.get(top.removesuffix(".libs").lower(), top)
        for name in files:
            size = os.lstat(os.path.join(folder, name)).st_size
            by_package[os.path.splitext(name)[0] if top == "." else top] += size
            by_kind[kind_of(name)] += size
    return by_package, by_kind


def main() -> None:
    """Print the largest packages, then the totals."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=20, help="how many packages to list")
    args = parser.parse_args()
    site = sysconfig.get_paths()["purelib"]
    by_package, by_kind = measure(site)
    for package, size in by_package.most_common(args.top):
        print(f"{size / 1e6:7.1f} MB  {package}")
    if args.top > 3:
        print(f"{sum(by_package.values()) / 1e6:7.1f} MB  in {site}, of which:")
        for kind, size in by_kind.most_common():
            print(f"{size / 1e6:7.1f} MB    {kind}")


if __name__ == "__main__":
    main()
