#!/usr/bin/env bash
# Replace a service's containers one at a time, without a moment with fewer healthy ones than
# now: start one more container (the current config and image), wait until it is healthy (for
# the predictor also ready: it serves a model), stop and remove one old container, repeat
# until no old one is left. nginx spreads requests over every replica and retries the next on
# a connect error, 502, 503 or 504 (infrastructure/nginx/routes.conf), so clients see no
# failed request (docs/deploy-vm.md, "Rolling update").
#
#   infrastructure/prod/rolling-update.sh [SERVICE]          # SERVICE: api (the default)
#   MLOPS_IMAGE=mlops-stack:0.2.0 infrastructure/prod/rolling-update.sh api   # image upgrade
#
# An upgrade is the same command with the new tag in MLOPS_IMAGE (or .env); without one it is
# a zero-downtime restart (`docker compose restart api` restarts every replica at once).
# It runs `docker compose`, which reads COMPOSE_FILE, COMPOSE_PROJECT_NAME, MLOPS_IMAGE and
# .env as always; COMPOSE_FILE defaults here to docker-compose.yml:docker-compose.prod.yml.
# ROLLING_UPDATE_TIMEOUT (300): seconds a new container gets to become healthy (and ready).
#
# Leaves as many containers as were running. If a new one does not become healthy in time
# (or exits), it is removed, the old ones are left as they are, and the script exits 1: fix
# the image or config and run it again. For services that publish no port and of which two
# copies may run side by side for a moment: api, dashboard (not nginx, postgres, redis).
set -euo pipefail
cd "$(dirname "$0")/../.."
export COMPOSE_FILE=${COMPOSE_FILE:-docker-compose.yml:docker-compose.prod.yml}

service=${1:-api}
timeout=${ROLLING_UPDATE_TIMEOUT:-300}
# where the new container says it can do its work, asked from inside it (the image has no curl)
ready_url=""
[ "$service" = api ] && ready_url=http://127.0.0.1:8000/ready

log() { printf '%s rolling-update %s: %s\n' "$(date -u +%H:%M:%S)" "$service" "$*" >&2; }

# containers: the IDs of the service's running containers, oldest first
containers() {
  docker compose ps -q "$service" | xargs -r docker inspect -f '{{.Created}} {{.Id}}' \
    | sort | cut -d' ' -f2
}

# wait_healthy ID: until the container's healthcheck says healthy and (api) /ready answers
# 200; returns 1 when it exits, turns unhealthy or the timeout passes
wait_healthy() {
  local id=$1 deadline=$((SECONDS + timeout)) state
  while [ $SECONDS -lt $deadline ]; do
    state=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
    case "$state" in
      "running healthy" | "running none")
        if [ -z "$ready_url" ] || docker exec "$id" python -m mlops_stack.probe "$ready_url" >/dev/null 2>&1; then
          return 0
        fi ;;
      "running unhealthy" | exited* | dead*)
        log "new container ${id:0:12} is $state"
        return 1 ;;
    esac
    sleep 1
  done
  log "new container ${id:0:12} not healthy${ready_url:+ and ready} after ${timeout}s"
  return 1
}

mapfile -t old < <(containers)
count=${#old[@]}
if [ "$count" -eq 0 ]; then
  log "no running container: start it with docker compose up -d $service"
  exit 2
fi
image=$(docker compose config --format json | python3 -c 'import json, sys
print(json.load(sys.stdin)["services"][sys.argv[1]]["image"])' "$service")
log "replacing $count container(s) with $image, one at a time"

new=""
# interrupted while a new container starts: remove it, so that $count remain
trap '[ -z "$new" ] || docker rm -f "$new" >/dev/null 2>&1 || true' INT TERM

done=0
for victim in "${old[@]}"; do
  before=$(containers)
  docker compose up -d --no-deps --no-recreate --scale "$service=$((count + 1))" "$service" 2>&1 \
    | grep -v -e '^ *Container .* Running$' >&2 || true
  new=$(comm -13 <(sort <<<"$before") <(containers | sort) | head -1)
  if [ -z "$new" ]; then
    log "docker compose started no new container"
    exit 1
  fi
  started=$SECONDS
  if ! wait_healthy "$new"; then
    docker logs --tail 30 "$new" >&2 2>&1 || true
    docker rm -f "$new" >/dev/null
    log "removed the new container; $((count - done)) old and $done new left running, nothing else changed"
    exit 1
  fi
  log "new ${new:0:12} healthy after $((SECONDS - started))s; stopping old ${victim:0:12}"
  new=""
  docker stop "$victim" >/dev/null   # SIGTERM, then the service's stop_grace_period
  docker rm "$victim" >/dev/null
  done=$((done + 1))
done

running=$(containers | wc -l)
want=$(docker image inspect -f '{{.Id}}' "$image")
stale=$(containers | xargs -r docker inspect -f '{{.Image}}' | grep -vc "^$want$" || true)
log "done: $running container(s), $stale not on $image"
[ "$running" -eq "$count" ] && [ "$stale" -eq 0 ]
