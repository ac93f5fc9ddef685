#!/usr/bin/env bash
# CI's compose stage, in three parts on a real Docker engine, each torn down after itself:
#   dev:   docker-compose.yml with both profiles (notebooks, observability); the lifecycle
#          through nginx only (tests/e2e): the live landing page, Prometheus' targets and SLO
#          rules, ending with the loop under load: concept shift -> alert -> retrain ->
#          promotion (test_loop.py)
#   table: docker-compose.yml again, scaled out (`--scale api=3 --scale worker=2`), on a
#          user's regression table by configuration alone (a diabetes CSV in a mounted
#          directory, its path, target and model name in an env file); a champion and a
#          numeric prediction through nginx (tests/e2e_table); then the scale-out under load:
#          requests on every replica, a promotion on every replica, one bootstrap, one monitor
#          run per interval, every row once (tests/e2e_scale), and the throughput with 3 and 1
#          api replicas (benchmarks/scale.py). It reuses dev's images and boots only the dev
#          stack.
#   prod:  docker-compose.yml + docker-compose.prod.yml with generated secrets and a self-signed
#          certificate; TLS, keys, logins, limits, hardening and backup/restore (tests/e2e_prod);
#          with the observability profile (dev's image, a few seconds): Prometheus hardened and
#          behind the login; then the front door under attack and faults under 20 predictions
#          a second, with their figures (tests/e2e_prod/chaos)
# Called by .ci/run; runs as is on a laptop with Docker too (as root, or a user in the docker
# group). MLOPS_E2E_STAGES="dev table prod" (the default) picks the parts.
#
# On a machine with no container registry (CI), ../shared/docker/ provides the engine and
# stand-ins for the official base images; set MLOPS_DOCKER_TOOLS to that folder if it is not
# found next to the repository. Where `docker` already works and the images can be pulled,
# nothing is installed.
#
# Prints each step with timings, the measured resources (image sizes, the Python image's three
# largest packages, time to healthy, time to the first champion, idle memory) and, on
# failure, `docker compose ps` and the logs. The dev stage fails unless the Python image was
# built once (one image, no dangling one).
set -euo pipefail
cd "$(dirname "$0")/../.."

STAGES=${MLOPS_E2E_STAGES:-dev table prod}
PROJECT=${COMPOSE_PROJECT_NAME:-mlops-stack-ci}
export MLOPS_HTTP_PORT=${MLOPS_HTTP_PORT:-18080}
export MLOPS_E2E_URL="http://127.0.0.1:${MLOPS_HTTP_PORT}"
# prod: its own project and ports, on loopback only
export MLOPS_PUBLIC_BIND=127.0.0.1
export MLOPS_PUBLIC_HTTP_PORT=${MLOPS_PUBLIC_HTTP_PORT:-18081}
export MLOPS_PUBLIC_HTTPS_PORT=${MLOPS_PUBLIC_HTTPS_PORT:-18443}
export MLOPS_PROD_URL="https://127.0.0.1:${MLOPS_PUBLIC_HTTPS_PORT}"
export MLOPS_PROD_HTTP_URL="http://127.0.0.1:${MLOPS_PUBLIC_HTTP_PORT}"
# the dashboard's browser tests save a screenshot of each page here (CI keeps the folder)
export MLOPS_SCREENSHOT_DIR=${MLOPS_SCREENSHOT_DIR:-$PWD/artifacts/screenshots}
CHAMPION_TIMEOUT=${CHAMPION_TIMEOUT:-600}
unset COMPOSE_FILE

started=$(date +%s)
now() { date +%s; }
# the prod secrets are files owned by the containers' users (infrastructure/prod/secret-owners.sh)
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo --preserve-env=MLOPS_SECRETS_DIR,COMPOSE_FILE "$@"; fi
}
step() { printf '\n==> [%5ss] %s\n' "$(($(now) - started))" "$*"; }

docker_tools() {
  for dir in "${MLOPS_DOCKER_TOOLS:-}" ../shared/docker /work/shared/docker; do
    if [ -n "$dir" ] && [ -x "$dir/engine-up.sh" ]; then echo "$dir"; return; fi
  done
}

# the stack in use, for on_exit: "" when none is up
current=""

on_exit() {
  status=$?
  if [ $status -ne 0 ] && [ -n "$current" ]; then
    step "FAILED (exit $status): docker compose ps and logs ($current)"
    docker compose ps -a || true
    docker compose logs --no-color --timestamps --tail 300 || true
  fi
  teardown
  [ -z "${secrets_tmp:-}" ] || as_root rm -rf "$secrets_tmp"  # files of the containers' users
  [ -z "${table_tmp:-}" ] || rm -rf "$table_tmp"
  [ -z "${dev_tmp:-}" ] || rm -rf "$dev_tmp"
  exit $status
}

teardown() {
  [ -n "$current" ] || return 0
  step "docker compose down -v ($current)"
  docker compose --profile notebooks --profile observability down -v --remove-orphans >/dev/null 2>&1 || true
  current=""
}

# base_images TOOLS: the registry images the dev and prod stacks need, as the tools' own
# compose_base_images.py reads them (it leaves out the tags a service here builds: the Python
# services without `build:` run the image `mlflow` builds, which no registry has).
base_images() {
  docker compose -f docker-compose.yml -f docker-compose.prod.yml config --format json \
    | python3 "$1/compose_base_images.py"
}

tools=$(docker_tools)
if [ -n "$tools" ]; then
  step "Docker engine ($tools/engine-up.sh)"
  "$tools/engine-up.sh"
  step "base images: stand-ins where no registry can be reached"
  # the profiles' services too: Prometheus is built FROM debian:bookworm-slim
  mapfile -t bases < <(COMPOSE_PROFILES=notebooks,observability base_images "$tools")
  "$tools/stand-in-images.sh" "${bases[@]}"
elif ! docker info >/dev/null 2>&1; then
  echo "no Docker engine and no ../shared/docker to start one (set MLOPS_DOCKER_TOOLS)" >&2
  exit 2
fi
trap on_exit EXIT

# wait_champion URL: until URL/api/ready answers 200 (a champion is served); prints the answer.
# python3's standard library, not curl: CI machines need not have curl. The prod stack's
# certificate is the self-signed one made for this run, hence no verification.
wait_champion() {
  local url=$1/api/ready t1
  t1=$(now)
  ready() {
    python3 -c 'import ssl, sys, urllib.request
context = ssl._create_unverified_context()
print(urllib.request.urlopen(sys.argv[1], timeout=5, context=context).read().decode())' "$url"
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
}

# python_image: the name of the stack's Python image, which the mlflow service builds and the
# other Python services run (docker-compose.yml, x-python-image).
python_image() {
  docker compose config --format json | python3 -c 'import json, sys
print(json.load(sys.stdin)["services"]["mlflow"]["image"])'
}

# images_before COMPOSE_ARGS...: what assert_one_build compares with, taken before the build:
# the IDs the built tags point at (a rebuild after a change leaves those dangling, as README
# says) and the project's dangling images that earlier runs left.
images_before() {
  local tags
  tags=$(docker compose "$@" config --format json | python3 -c 'import json, sys
print("\n".join(s["image"] for s in json.load(sys.stdin)["services"].values() if s.get("build")))')
  # shellcheck disable=SC2086
  previous_images=$(docker image inspect -f '{{.Id}}' $tags 2>/dev/null || true)
  dangling_before=$(docker image ls -q --no-trunc -f dangling=true \
    -f "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | sort -u)
}

# assert_one_build: after build and up, one service builds the Python image, its repository
# holds one image, which every Python service runs, and the build left no dangling image but
# the built tags' previous ones; those are pruned as README tells users to, then none is left.
assert_one_build() {
  local image repo builders in_repo running dangling left
  image=$(python_image)
  repo=${image%:*}
  builders=$(docker compose config --format json | python3 -c 'import json, sys
services = json.load(sys.stdin)["services"]
image = services["mlflow"]["image"]
print(" ".join(sorted(n for n, s in services.items() if s.get("build") and s.get("image") == image)))')
  in_repo=$(docker image ls -q --no-trunc "$repo" | sort -u)
  # shellcheck disable=SC2046
  running=$(docker inspect -f '{{.Image}}' $(docker compose ps -q mlflow prefect-server worker api dashboard) | sort -u)
  dangling=$(docker image ls -q --no-trunc -f dangling=true \
    -f "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | sort -u |
    comm -23 - <(printf '%s\n' "$dangling_before" "$previous_images" | sort -u))
  printf '%s: built by [%s]; images in %s: %s; run by the Python services: %s; new dangling: %s\n' \
    "$image" "$builders" "$repo" "$(grep -c . <<<"$in_repo")" "$(grep -c . <<<"$running")" \
    "$(grep -c . <<<"$dangling")"
  if [ "$builders" != mlflow ] || [ "$(grep -c . <<<"$in_repo")" != 1 ] ||
     [ "$running" != "$in_repo" ] || [ -n "$dangling" ]; then
    echo "not one build of $image: see the line above" >&2
    docker image ls -a >&2
    exit 1
  fi
  docker image prune -f --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" >/dev/null
  left=$(docker image ls -q -f dangling=true -f "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
  if [ -n "$left" ]; then
    echo "dangling images of $COMPOSE_PROJECT_NAME after the prune: $left" >&2
    exit 1
  fi
}

print_resources() {
  local image
  docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(mlops-stack|postgres|redis|nginx)' || true
  # the Python image's size and its three largest packages (docs/dependencies.md, "The image")
  image=$(python_image)
  printf '%s: %s; largest: %s\n' "$image" "$(docker image ls --format '{{.Size}}' "$image")" \
    "$(docker run --rm -i --entrypoint python "$image" - --top 3 <infrastructure/image/sizes.py |
      awk '{ printf "%s%s %s MB", sep, $3, $1; sep = ", " }')"
  local ids
  ids=$(docker compose ps -q)  # this stack's containers only
  # shellcheck disable=SC2086
  docker stats --no-stream --format '{{.Name}} {{.MemUsage}} {{.CPUPerc}}' $ids | sed "s/^${COMPOSE_PROJECT_NAME}-//"
  # shellcheck disable=SC2086
  idle_mib=$(docker stats --no-stream --format '{{.MemUsage}}' $ids | awk '
    { split($1, a, /[A-Za-z]+/); v = a[1]; u = $1; gsub(/[0-9.]/, "", u);
      if (u == "GiB") v *= 1024; else if (u == "KiB" || u == "kB") v /= 1024; total += v }
    END { printf "%.0f", total }')
  printf '%s: build %ss; up --wait to healthy %ss; first champion %ss after healthy; idle memory %s MiB\n' \
    "$current" "$build_s" "$healthy_s" "$champion_s" "$idle_mib"
}

# build_and_up BUILD_ARGS...: build, then up --wait; sets build_s and healthy_s. A stack of
# the same name left by an aborted run (or restarted by the engine) is removed first.
build_and_up() {
  local t0 build_log
  docker compose --profile notebooks --profile observability down -v --remove-orphans >/dev/null 2>&1 || true
  step "$current: docker compose build"
  t0=$(now)
  build_log=$(mktemp)
  if ! docker compose "$@" build --progress plain >"$build_log" 2>&1; then
    tail -60 "$build_log"; exit 1
  fi
  build_s=$(($(now) - t0))
  step "$current: docker compose up -d --wait"
  t0=$(now)
  docker compose up -d --wait --wait-timeout 300
  healthy_s=$(($(now) - t0))
}

# The settings the dev stage's tests need, in an env file of their own (MLOPS_ENV_FILE, as the
# table stage does) rather than in docker-compose.yml's defaults. Cool-down 0: the retrain
# tests/e2e/test_loop.py triggers is not held by one an earlier monitor run started. The
# default window (5000 rows) holds every row the tests send, so it is left as it is.
dev_env() {
  dev_tmp=$(mktemp -d)
  cat >"$dev_tmp/e2e.env" <<ENV
MLOPS_RETRAIN_COOLDOWN_MINUTES=0
ENV
  export MLOPS_ENV_FILE=$dev_tmp/e2e.env
  step "dev: settings for the tests ($MLOPS_ENV_FILE): $(tr '\n' ' ' <"$MLOPS_ENV_FILE")"
}

dev_stage() {
  export COMPOSE_PROJECT_NAME=$PROJECT
  current=dev
  dev_env
  # `up` starts Prometheus with the stack (COMPOSE_PROFILES); the build adds the jupyter target
  export COMPOSE_PROFILES=observability
  images_before --profile notebooks --profile observability
  build_and_up --profile notebooks --profile observability
  step "dev: one build of the Python image, no dangling image"
  assert_one_build
  step "dev: waiting for the first champion (the worker's bootstrap train run)"
  wait_champion "$MLOPS_E2E_URL"
  step "dev: resources: images and idle memory"
  print_resources
  step "dev: JupyterLab (profile notebooks) up"
  docker compose --profile notebooks up -d --wait jupyter
  step "dev: end-to-end tests through nginx (tests/e2e)"
  python -m pytest tests/e2e -v -p no:cacheprovider --durations=5
  teardown
  unset MLOPS_ENV_FILE COMPOSE_PROFILES
}

# A user's table by configuration alone, as README's "Your own data" tells it: the table in a
# directory compose mounts read-only (MLOPS_DATASETS_DIR, ./datasets by default) and the
# lines a user puts in .env, here in a file of their own (MLOPS_ENV_FILE) so that a
# developer's .env is left alone. Only the dev stack, on dev's images (built if missing), and
# scaled out as docs/scale-out.md's step 1 runs it: three predictor replicas, two workers.
# The scale-out settings: a monitor run a minute, so that tests/e2e_scale sees a few
# intervals while it runs; the predictors' registry poll longer than the whole stage, so that
# a promotion can reach the replicas within the test's deadline only by Redis' notice.
table_stage() {
  local t0
  t0=$(now)
  export COMPOSE_PROJECT_NAME=$PROJECT-table
  current=table
  table_tmp=$(mktemp -d)
  export MLOPS_DATASETS_DIR=$table_tmp/datasets
  export MLOPS_ENV_FILE=$table_tmp/table.env
  export MLOPS_E2E_MODEL=diabetes-regressor
  step "table: scikit-learn's diabetes table as a CSV in $MLOPS_DATASETS_DIR"
  mkdir -p "$MLOPS_DATASETS_DIR"
  python -c 'import json, sys; from sklearn.datasets import load_diabetes
frame = load_diabetes(as_frame=True).frame
frame.to_csv(sys.argv[1], index=False)
row = frame.drop(columns="target").iloc[0]
json.dump({"features": {k: float(v) for k, v in row.items()}}, open(sys.argv[2], "w"))' \
    "$MLOPS_DATASETS_DIR/diabetes.csv" "$table_tmp/predict.json"
  chmod -R a+rX "$table_tmp"  # mktemp's 0700: the containers' user (uid 10001) reads it
  cat >"$MLOPS_ENV_FILE" <<ENV
MLOPS_DATASET_PATH=/datasets/diabetes.csv
MLOPS_TARGET_COLUMN=target
MLOPS_MODEL_NAME=$MLOPS_E2E_MODEL
MLOPS_TASK=regression
MLOPS_MONITOR_INTERVAL_MINUTES=1
MLOPS_RELOAD_POLL_SECONDS=3600
ENV
  docker compose down -v --remove-orphans >/dev/null 2>&1 || true
  if ! docker image inspect "$(python_image)" >/dev/null 2>&1; then
    step "table: $(python_image) missing (no dev stage before): docker compose build"
    docker compose build --progress quiet mlflow
  fi
  step "table: docker compose up -d --wait --scale api=3 --scale worker=2 (dev's images)"
  docker compose up -d --wait --wait-timeout 300 --scale api=3 --scale worker=2
  step "table: waiting for the first champion (a regressor trained on the mounted CSV)"
  wait_champion "$MLOPS_E2E_URL"
  step "table: a champion and a numeric prediction through nginx (tests/e2e_table)"
  python -m pytest tests/e2e_table -v -p no:cacheprovider
  step "table: 3 replicas, 2 workers under load through nginx (tests/e2e_scale)"
  python -m pytest tests/e2e_scale -v -s -p no:cacheprovider
  step "table: requests a second with 3 and 1 api replicas through nginx (benchmarks/scale.py)"
  python benchmarks/scale.py --url "$MLOPS_E2E_URL" --body "$table_tmp/predict.json" \
    --replicas 3,1 --duration 15 --warmup 5 --clients 8
  teardown
  unset MLOPS_DATASETS_DIR MLOPS_ENV_FILE
  step "table: stage took $(($(now) - t0))s"
}

# attacks_and_chaos: the front door under attack, then faults under 20 predictions a second
# (tests/e2e_prod/chaos), on the prod stack that tests/e2e_prod leaves; each part prints its
# figures and its time, and runs even when the other failed; either failing fails the stage.
# The attacks go first: seconds each, and a front door they knock over restarts by itself.
attacks_and_chaos() {
  local t0 attacks=0 chaos=0 attacks_s
  step "prod: attacks on the front door (tests/e2e_prod/chaos/test_attacks.py)"
  t0=$(now)
  python -m pytest tests/e2e_prod/chaos/test_attacks.py -v -s -p no:cacheprovider || attacks=$?
  attacks_s=$(($(now) - t0))
  step "prod: chaos under 20 requests/s (tests/e2e_prod/chaos/test_chaos.py)"
  t0=$(now)
  python -m pytest tests/e2e_prod/chaos/test_chaos.py -v -s -p no:cacheprovider || chaos=$?
  step "prod: attacks took ${attacks_s}s (exit $attacks), chaos $(($(now) - t0))s (exit $chaos)"
  [ "$attacks" -eq 0 ] && [ "$chaos" -eq 0 ]
}

prod_stage() {
  export COMPOSE_PROJECT_NAME=$PROJECT-prod
  export COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml
  export COMPOSE_PROFILES=observability  # Prometheus hardened, behind the login
  # the chaos suite's load is 20 requests/s with one key for minutes (1,200 a minute): above
  # the predictor's default per-key limit of 600; nginx's per-key limit (20 r/s) stays as is
  export MLOPS_RATE_LIMIT_PER_MINUTE=${MLOPS_RATE_LIMIT_PER_MINUTE:-3000}
  secrets_tmp=$(mktemp -d)
  export MLOPS_SECRETS_DIR=$secrets_tmp/secrets
  current=prod
  step "prod: secrets and a self-signed certificate (infrastructure/prod/)"
  as_root infrastructure/prod/init-secrets.sh
  as_root infrastructure/prod/self-signed-cert.sh
  build_and_up  # adds the backup target
  step "prod: waiting for the first champion"
  wait_champion "$MLOPS_PROD_URL"
  step "prod: resources (memory used / limit)"
  print_resources
  step "prod: end-to-end tests over https (tests/e2e_prod)"
  python -m pytest tests/e2e_prod --ignore=tests/e2e_prod/chaos -v -p no:cacheprovider
  attacks_and_chaos
  teardown
  unset COMPOSE_FILE COMPOSE_PROFILES MLOPS_RATE_LIMIT_PER_MINUTE
}

for stage in $STAGES; do
  case "$stage" in
    dev) dev_stage ;;
    table) table_stage ;;
    prod) prod_stage ;;
    *) echo "unknown stage '$stage' (dev, table, prod)" >&2; exit 2 ;;
  esac
done
step "done"
