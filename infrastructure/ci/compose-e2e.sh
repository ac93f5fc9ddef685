#!/usr/bin/env bash
# CI's compose stage: boot docker-compose.yml on a real Docker engine and run the lifecycle
# through nginx only (tests/e2e), then tear it all down. Called by .ci/run; runs as is on a
# laptop with Docker too (as root, or a user in the docker group).
#
# On a machine with no container registry (CI), ../shared/docker/ provides the engine and
# stand-ins for the official base images; set MLOPS_DOCKER_TOOLS to that folder if it is not
# found next to the repository. Where `docker` already works and the images can be pulled,
# nothing is installed.
#
# Prints each step with timings, the measured resources (image sizes, time to healthy, time
# to the first champion, idle memory) and, on failure, `docker compose ps` and the logs.
set -euo pipefail
cd "$(dirname "$0")/../.."

export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-mlops-stack-ci}
export MLOPS_HTTP_PORT=${MLOPS_HTTP_PORT:-18080}
export MLOPS_E2E_URL="http://127.0.0.1:${MLOPS_HTTP_PORT}"
# the dashboard's browser tests save a screenshot of each page here (CI keeps the folder)
export MLOPS_SCREENSHOT_DIR=${MLOPS_SCREENSHOT_DIR:-$PWD/artifacts/screenshots}
CHAMPION_TIMEOUT=${CHAMPION_TIMEOUT:-600}

started=$(date +%s)
now() { date +%s; }
step() { printf '\n==> [%5ss] %s\n' "$(($(now) - started))" "$*"; }

docker_tools() {
  for dir in "${MLOPS_DOCKER_TOOLS:-}" ../shared/docker /work/shared/docker; do
    if [ -n "$dir" ] && [ -x "$dir/engine-up.sh" ]; then echo "$dir"; return; fi
  done
}

# A machine restored from a snapshot, or a session that ended without stopping the engine,
# can leave containerd's and dockerd's sockets and pid file behind with no process on them.
# engine-up.sh sees the socket, skips starting containerd, and dockerd then times out
# dialling it ("failed to dial /run/containerd/containerd.sock"). Clear only what no
# running process owns.
process_running() {  # /proc, not pgrep: procps need not be installed
  local comm
  for comm in /proc/[0-9]*/comm; do
    [ "$(cat "$comm" 2>/dev/null)" = "$1" ] && return 0
  done
  return 1
}

clear_stale_engine_state() {
  docker info >/dev/null 2>&1 && return
  if ! process_running containerd; then
    rm -f /run/containerd/containerd.sock /run/containerd/containerd.sock.ttrpc
  fi
  if ! process_running dockerd; then
    rm -f /var/run/docker.pid /var/run/docker.sock
  fi
}

on_exit() {
  status=$?
  if [ $status -ne 0 ]; then
    step "FAILED (exit $status): docker compose ps and logs"
    docker compose ps -a || true
    docker compose logs --no-color --timestamps --tail 300 || true
  fi
  step "docker compose down -v"
  docker compose --profile notebooks down -v --remove-orphans >/dev/null 2>&1 || true
  exit $status
}

tools=$(docker_tools)
if [ -n "$tools" ]; then
  step "Docker engine ($tools/engine-up.sh)"
  clear_stale_engine_state
  if ! "$tools/engine-up.sh"; then
    tail -40 /var/log/standin-containerd.log /var/log/standin-dockerd.log 2>/dev/null || true
    exit 1
  fi
  step "base images: stand-ins where no registry can be reached"
  "$tools/stand-in-images.sh" --compose docker-compose.yml
elif ! docker info >/dev/null 2>&1; then
  echo "no Docker engine and no ../shared/docker to start one (set MLOPS_DOCKER_TOOLS)" >&2
  exit 2
fi
trap on_exit EXIT

step "docker compose build (the runtime and jupyter targets of infrastructure/Dockerfile)"
t0=$(now)
build_log=$(mktemp)
if ! docker compose --profile notebooks build --progress plain >"$build_log" 2>&1; then
  tail -60 "$build_log"; exit 1
fi
build_s=$(($(now) - t0))

step "docker compose up -d --wait"
t0=$(now)
docker compose up -d --wait --wait-timeout 300
healthy_s=$(($(now) - t0))

step "waiting for the first champion (the worker's bootstrap train run)"
t1=$(now)
# python3's standard library, not curl: CI machines need not have curl
ready() {
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "$MLOPS_E2E_URL/api/ready"
}
until ready >/dev/null 2>&1; do
  if [ $(($(now) - t1)) -gt "$CHAMPION_TIMEOUT" ]; then
    echo "no champion served after ${CHAMPION_TIMEOUT}s" >&2
    ready >&2 || true
    exit 1
  fi
  sleep 2
done
champion_s=$(($(now) - t1))
ready

step "resources: images and idle memory"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(mlops-stack|postgres|redis|nginx)' || true
docker stats --no-stream --format '{{.Name}} {{.MemUsage}}' | sed "s/^${COMPOSE_PROJECT_NAME}-//"
idle_mib=$(docker stats --no-stream --format '{{.MemUsage}}' | awk '
  { split($1, a, /[A-Za-z]+/); v = a[1]; u = $1; gsub(/[0-9.]/, "", u);
    if (u == "GiB") v *= 1024; else if (u == "KiB" || u == "kB") v /= 1024; total += v }
  END { printf "%.0f", total }')
printf 'build %ss; up --wait to healthy %ss; first champion %ss after healthy; idle memory %s MiB\n' \
  "$build_s" "$healthy_s" "$champion_s" "$idle_mib"

step "JupyterLab (profile notebooks) up"
docker compose --profile notebooks up -d --wait jupyter

step "end-to-end tests through nginx (tests/e2e)"
python -m pytest tests/e2e -v -p no:cacheprovider

step "done"
