#!/bin/sh
# The Prometheus container's entrypoint (POSIX sh and sed: the upstream image has both).
#
#   prometheus-entrypoint [PROMETHEUS ARGS...]   render, check, then exec prometheus
#   prometheus-entrypoint check                  render with the default targets, check the
#                                                config and rules, run the rules' unit tests
#
# Prometheus reads no environment variables in its rule files, so the SLO targets are put into
# the rules here, from the two variables docker-compose.yml passes (documented defaults):
#   MLOPS_SLO_AVAILABILITY     share of /predict and /predict/batch answers that are not 5xx
#                              (default 0.995)
#   MLOPS_SLO_LATENCY_SECONDS  the p99 latency bound of the same routes (default 0.25); it must
#                              be a bucket bound of the predictor's latency histogram, since the
#                              latency SLI counts the requests in that bucket
# The rendered files go to PROMETHEUS_RUNTIME_DIR (/tmp/prometheus; a tmpfs under the prod
# override's read-only root), checked by promtool before Prometheus starts: a bad target stops
# the container with promtool's message instead of loading no rules.
set -eu

SOURCE=/etc/prometheus/mlops
RUNTIME=${PROMETHEUS_RUNTIME_DIR:-/tmp/prometheus}
DEFAULT_AVAILABILITY=0.995
DEFAULT_LATENCY=0.25
# mlops_stack/serving/metrics.py's buckets of mlops_http_request_seconds, as the `le` label
# writes them
LATENCY_BUCKETS="0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1.0 2.5 5.0"

fail() { echo "prometheus-entrypoint: $*" >&2; exit 2; }

valid_availability() {
  # a decimal strictly between 0 and 1, e.g. 0.995
  printf '%s' "$1" | grep -Eq '^0\.[0-9]*[1-9][0-9]*$' \
    || fail "MLOPS_SLO_AVAILABILITY=$1: give a share between 0 and 1, e.g. 0.995"
}

valid_latency() {
  for bucket in $LATENCY_BUCKETS; do [ "$1" = "$bucket" ] && return 0; done
  fail "MLOPS_SLO_LATENCY_SECONDS=$1: use a bucket bound of the predictor's latency histogram" \
       "($LATENCY_BUCKETS)"
}

# render DIR AVAILABILITY LATENCY: the config, the rules with these targets, the rules' tests
render() {
  valid_availability "$2"
  valid_latency "$3"
  mkdir -p "$1/rules" "$1/tests"
  cp "$SOURCE/prometheus.yml" "$1/prometheus.yml"
  for rules in "$SOURCE"/rules/*.yml; do
    sed -e "s/@SLO_AVAILABILITY@/$2/g" -e "s/@SLO_LATENCY_SECONDS@/$3/g" \
      "$rules" >"$1/rules/$(basename "$rules")"
  done
  cp "$SOURCE"/tests/*.yml "$1/tests/"
}

if [ "${1:-}" = check ]; then
  # in a directory of its own (the image build runs this as root); the unit tests are written
  # for the default targets
  scratch=$(mktemp -d)
  render "$scratch" "$DEFAULT_AVAILABILITY" "$DEFAULT_LATENCY"
  promtool check config "$scratch/prometheus.yml"
  promtool test rules "$scratch"/tests/*.yml
  rm -rf "$scratch"
  exit 0
fi

render "$RUNTIME" "${MLOPS_SLO_AVAILABILITY:-$DEFAULT_AVAILABILITY}" \
  "${MLOPS_SLO_LATENCY_SECONDS:-$DEFAULT_LATENCY}"
promtool check config "$RUNTIME/prometheus.yml" >&2
exec prometheus \
  --config.file="$RUNTIME/prometheus.yml" \
  --web.console.libraries=/etc/prometheus/console_libraries \
  --web.console.templates=/etc/prometheus/consoles \
  "$@"
