#!/bin/sh
# Trim the image's virtual environment to what the services run (infrastructure/Dockerfile,
# build stage; measured in docs/dependencies.md, "The image"):
#   - the test suites that numpy, pandas, scipy, scikit-learn, statsmodels, pyarrow and
#     matplotlib install with themselves (about 135 MB). Only these: evidently.tests is the
#     library's own test API, used by the drift reports;
#   - C/C++/Cython sources and headers (only for building extensions against these packages)
#     and type stubs (.pyi, read by type checkers, not at runtime);
#   - the Jupyter front-end extensions plotly and pydeck install (share/jupyter and the
#     jupyterlab_plotly package, 40 MB): moved to /opt/jupyter-only, which the `jupyter`
#     target copies back; the services do not serve them;
#   - source maps (*.js.map, read by a browser's developer tools only: pydeck's is 19 MB);
#   - symbols in the shared objects (strip --strip-unneeded: debug and static symbols, not
#     those the dynamic linker needs), about 107 MB. Not in the libraries auditwheel vendored
#     (<package>.libs/) nor in the modules that load them (RPATH into a .libs directory):
#     patchelf rewrote those, and strip then breaks them ("ELF load command address/offset
#     not page-aligned" from numpy's OpenBLAS). All 354 extension modules import as before.
# Usage: trim-venv.sh VENV
set -eu
venv=$1
site=$(echo "$venv"/lib/python3*/site-packages)
[ -d "$site" ] || { echo "trim-venv: no site-packages under $venv" >&2; exit 2; }

for package in numpy pandas scipy sklearn statsmodels pyarrow matplotlib; do
  find "$site/$package" -type d -name tests -prune -exec rm -rf {} +
done
find "$site" -type f \( -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name '*.hpp' \
  -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.pyi' \) -delete
find "$site" -type f -name '*.js.map' -delete
for path in share/jupyter "${site#"$venv"/}/jupyterlab_plotly"; do
  [ -e "$venv/$path" ] || continue
  mkdir -p "$(dirname "/opt/jupyter-only/$path")"
  mv "$venv/$path" "/opt/jupyter-only/$path"
done
find "$site" -type f \( -name '*.so' -o -name '*.so.*' \) -not -path '*.libs/*' |
  while read -r object; do
    if readelf -d "$object" | grep -E '\((RPATH|RUNPATH)\)' | grep -q '\.libs'; then
      continue
    fi
    strip --strip-unneeded "$object"
  done
