#!/usr/bin/env bash
# Give every secret file of docker-compose.prod.yml to the user of the container that reads it,
# mode 0600: readable by that one user and root, by nobody else on the VM or in another
# container. init-secrets.sh and self-signed-cert.sh end with it; run it again (as root) after
# putting a certificate of your own in place, or after adding a secret.
#
#   sudo infrastructure/prod/secret-owners.sh
#
# Why owners: Compose mounts a file secret as a bind mount of the host file, so a container sees
# the host file's owner and mode; the `uid`, `gid` and `mode` of the long secret syntax are
# ignored for file secrets (Compose warns, docs/deploy-vm.md "Secrets"). The owner is found, not
# written down: for each service that mounts a secret, its `user:` as numbers (the stack's own
# images: docker-compose.prod.yml's x-stack-user) or, for a user name or the image's default,
# what `id` says in that image (postgres and nginx images of different builds use different
# uids). A file two services read must have one owner: two users is an error naming them.
#
# Needs root (chown to other users), docker with compose, python3. Honours COMPOSE_FILE and
# MLOPS_SECRETS_DIR as docker compose does. Files not there yet (the certificate before
# self-signed-cert.sh) are listed and skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "secret-owners.sh: run it as root (sudo): it gives each secret file to the user" \
       "its container runs as" >&2
  exit 1
fi
compose_args=()
IFS=: read -ra compose_files <<<"${COMPOSE_FILE:-docker-compose.yml:docker-compose.prod.yml}"
for file in "${compose_files[@]}"; do compose_args+=(-f "$file"); done

# one line per secret a service mounts: file, service, image, user (empty: the image's own)
mounts=$(docker compose "${compose_args[@]}" --profile '*' config --format json | python3 -c '
import json, sys
config = json.load(sys.stdin)
files = {name: secret.get("file") for name, secret in config.get("secrets", {}).items()}
for name, service in sorted(config["services"].items()):
    for mount in service.get("secrets", []):
        if files.get(mount["source"]):
            print("\t".join([files[mount["source"]], name, service["image"], service.get("user", "")]))
')

# owner IMAGE USER: "uid:gid" a container of IMAGE running as USER has
owner() {
  local image=$1 user=$2
  if [[ $user =~ ^[0-9]+:[0-9]+$ ]]; then echo "$user"; return; fi
  local as=()
  [ -z "$user" ] || as=(--user "$user")
  if ! docker run --rm --network none "${as[@]}" --entrypoint sh "$image" -c 'echo "$(id -u):$(id -g)"'; then
    echo "secret-owners.sh: cannot run $image to find its user '${user:-(default)}':" \
         "pull or build it first (docker compose ... build), or give the service a numeric" \
         "user: uid:gid" >&2
    return 1
  fi
}

declare -A owner_of readers_of found
while IFS=$'\t' read -r file service image user; do
  [ -n "$file" ] || continue
  key="$image|$user"
  [ -n "${found[$key]:-}" ] || found[$key]=$(owner "$image" "$user")
  uid_gid=${found[$key]}
  if [ -n "${owner_of[$file]:-}" ] && [ "${owner_of[$file]}" != "$uid_gid" ]; then
    echo "secret-owners.sh: $file is read by ${readers_of[$file]} (${owner_of[$file]}) and" \
         "$service ($uid_gid): give each user a secret file of its own" >&2
    exit 1
  fi
  owner_of[$file]=$uid_gid
  readers_of[$file]="${readers_of[$file]:+${readers_of[$file]}, }$service"
done <<<"$mounts"

missing=()
for file in $(printf '%s\n' "${!owner_of[@]}" | sort); do
  if [ ! -e "$file" ]; then missing+=("$(basename "$file")"); continue; fi
  chown "${owner_of[$file]}" "$file"
  chmod 0600 "$file"
  printf '  %-28s 0600 %-12s %s\n' "$(basename "$file")" "${owner_of[$file]}" "${readers_of[$file]}"
done
[ ${#missing[@]} -eq 0 ] || echo "  not there yet (skipped): ${missing[*]}"
