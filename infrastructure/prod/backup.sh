#!/usr/bin/env bash
# mlops-backup: the stack's state, restorable in one command. Runs in the `backup` service of
# docker-compose.prod.yml (the `backup` target of infrastructure/Dockerfile: PostgreSQL's own
# client tools, so dumps match the server's version).
#
# A backup is a directory /backups/<UTC time>/ holding one pg_dump (custom format) per
# database, a tar of the MLflow artifact volume and SHA256SUMS. It is written under a
# .partial- name and renamed when complete, so a crash never leaves a half backup that looks
# whole. The newest BACKUP_KEEP are kept.
#
#   mlops-backup schedule          one backup now, then one every BACKUP_INTERVAL_HOURS
#   mlops-backup now               one backup, then prune to BACKUP_KEEP
#   mlops-backup list              the backups, oldest first
#   mlops-backup restore [NAME]    NAME or the newest: recreate every database from its dump
#                                  and replace the artifact volume's content
#   mlops-backup check             exit 1 unless the newest backup is younger than 2 intervals
#                                  (the service's healthcheck)
#
# Settings (environment): PGHOST (postgres), PGUSER (mlops), PGPASSWORD or PGPASSWORD_FILE,
# BACKUP_DATABASES ("mlflow prefect monitoring"), BACKUP_DIR (/backups),
# BACKUP_ARTIFACTS_DIR (/artifacts), BACKUP_KEEP (7), BACKUP_INTERVAL_HOURS (24).
set -euo pipefail

export PGHOST=${PGHOST:-postgres} PGUSER=${PGUSER:-mlops}
if [ -z "${PGPASSWORD:-}" ] && [ -n "${PGPASSWORD_FILE:-}" ]; then
  PGPASSWORD=$(<"$PGPASSWORD_FILE"); export PGPASSWORD
fi
databases=${BACKUP_DATABASES:-mlflow prefect monitoring}
dir=${BACKUP_DIR:-/backups}
artifacts=${BACKUP_ARTIFACTS_DIR:-/artifacts}
keep=${BACKUP_KEEP:-7}
interval_hours=${BACKUP_INTERVAL_HOURS:-24}

log() { printf '%s mlops-backup: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

backups() {  # complete backups, oldest first (names sort by time)
  find "$dir" -mindepth 1 -maxdepth 1 -type d -name '20*Z' -printf '%f\n' | sort
}

take() {
  local name tmp started=$SECONDS
  name=$(date -u +%Y%m%dT%H%M%SZ)
  tmp="$dir/.partial-$name"
  rm -rf "$dir"/.partial-*
  mkdir -p "$tmp"
  for db in $databases; do
    pg_dump --format=custom --no-owner --file="$tmp/$db.dump" "$db"
  done
  tar -C "$artifacts" -czf "$tmp/artifacts.tar.gz" .
  (cd "$tmp" && sha256sum -- *.dump artifacts.tar.gz >SHA256SUMS)
  mv "$tmp" "$dir/$name"
  log "backup $name taken in $((SECONDS - started)) s ($(du -sh "$dir/$name" | cut -f1))"
  prune
}

prune() {
  local all count
  mapfile -t all < <(backups)
  count=${#all[@]}
  for name in "${all[@]}"; do
    [ "$count" -gt "$keep" ] || break
    rm -rf "${dir:?}/$name"
    log "pruned $name (keeping the newest $keep)"
    count=$((count - 1))
  done
}

restore() {
  local name=${1:-latest} src
  if [ "$name" = latest ]; then name=$(backups | tail -1); fi
  src="$dir/$name"
  if [ -z "$name" ] || [ ! -d "$src" ]; then
    log "no backup '$name' in $dir (see: mlops-backup list)"; exit 1
  fi
  (cd "$src" && sha256sum --quiet -c SHA256SUMS) || { log "$name fails its checksums"; exit 1; }
  for db in $databases; do
    # WITH (FORCE): the services stay up and reconnect once the database is back
    psql -v ON_ERROR_STOP=1 --quiet --dbname postgres \
      -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" \
      -c "CREATE DATABASE \"$db\" OWNER \"$PGUSER\""
    pg_restore --exit-on-error --no-owner --role="$PGUSER" --dbname "$db" "$src/$db.dump"
    log "restored database $db from $name"
  done
  find "$artifacts" -mindepth 1 -delete
  tar -C "$artifacts" -xzf "$src/artifacts.tar.gz"
  log "restored the artifacts from $name"
}

check() {
  local newest age
  newest=$(backups | tail -1)
  [ -n "$newest" ] || { echo "no backup yet"; exit 1; }
  age=$(( $(date +%s) - $(stat -c %Y "$dir/$newest") ))
  if [ "$age" -gt $((2 * interval_hours * 3600)) ]; then
    echo "newest backup $newest is ${age}s old"; exit 1
  fi
  echo "newest backup $newest is ${age}s old"
}

schedule() {
  trap 'exit 0' TERM INT
  while true; do
    take || log "backup FAILED; next try in ${interval_hours} h"
    sleep "$((interval_hours * 3600))" &
    wait $!
  done
}

case "${1:-schedule}" in
  schedule) schedule ;;
  now) take ;;
  list) backups ;;
  restore) restore "${2:-latest}" ;;
  check) check ;;
  *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
