#!/usr/bin/env bash
# Create the secrets of a new VM for docker-compose.prod.yml, as files in ./secrets (or
# $MLOPS_SECRETS_DIR). Random values; never overwrites a file that exists, so it is safe to
# run again after adding a setting, and it never rotates a password behind a running database.
#
#   sudo infrastructure/prod/init-secrets.sh
#
# Needs root (see below), openssl, sha256sum, and docker and python3 for secret-owners.sh.
# Optional: MLOPS_ALERT_WEBHOOK_URL (written to alert_webhook_url; empty: no webhook),
# POSTGRES_USER (mlops), MLOPS_API_KEY_NAME (default), MLOPS_UI_USER (admin).
#
# Every file is 0600. The compose file mounts each one the services read at /run/secrets/<name>,
# and a container sees the host file's owner and mode: secret-owners.sh (run at the end) gives
# each file to the user its container runs as, which is why this needs root. The plain API key
# and UI password, for you to hand out, are never mounted: they and the 0700 directory belong
# to you (the user who ran sudo).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
  echo "init-secrets.sh: run it as root (sudo): each secret file goes to the user its" \
       "container runs as (secret-owners.sh)" >&2
  exit 1
fi
dir=${MLOPS_SECRETS_DIR:-secrets}
user=${POSTGRES_USER:-mlops}
# the operator who ran sudo owns the directory and the files meant for them
operator=${SUDO_UID:-0}:${SUDO_GID:-0}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
chown "$operator" "$dir"

created=()
kept=()
# write NAME CONTENT: only when NAME does not exist yet; 0600 (secret-owners.sh sets owners)
write() {
  local path="$dir/$1"
  if [ -e "$path" ]; then kept+=("$1"); return; fi
  printf '%s' "$2" >"$path"
  chmod 0600 "$path"
  created+=("$1")
}
random() { openssl rand -hex "${1:-24}"; }

write postgres_password "$(random)"
password=$(<"$dir/postgres_password")
# the backup service's copy: a file has one owner, and postgres and the backup run as two users
write backup_postgres_password "$password"
for db in mlflow prefect monitoring; do
  driver=psycopg2
  [ "$db" = prefect ] && driver=asyncpg
  write "${db}_db_url" "postgresql+$driver://$user:$password@postgres:5432/$db"
done

key_name=${MLOPS_API_KEY_NAME:-default}
if [ ! -e "$dir/api_keys" ]; then
  key=$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')
  write api_key.txt "$key"
  chown "$operator" "$dir/api_key.txt"
  write api_keys "$key_name:$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"
else
  kept+=(api_keys)
fi

ui_user=${MLOPS_UI_USER:-admin}
if [ ! -e "$dir/htpasswd" ]; then
  ui_password=$(random 16)
  write ui_password.txt "$ui_password"
  chown "$operator" "$dir/ui_password.txt"
  write htpasswd "$ui_user:$(openssl passwd -6 "$ui_password")"
else
  kept+=(htpasswd)
fi

write jupyter_token "$(random)"
write alert_webhook_url "${MLOPS_ALERT_WEBHOOK_URL:-}"

echo "secrets in $dir/"
[ ${#created[@]} -eq 0 ] || echo "  created: ${created[*]}"
[ ${#kept[@]} -eq 0 ] || echo "  kept (already there): ${kept[*]}"
echo "owners (secret-owners.sh):"
MLOPS_SECRETS_DIR=$dir infrastructure/prod/secret-owners.sh
cat <<NEXT

Next steps:
  1. TLS: put the certificate chain in $dir/tls_cert and its key in $dir/tls_key
     (e.g. Let's Encrypt's fullchain.pem and privkey.pem), or to try it out:
       sudo infrastructure/prod/self-signed-cert.sh
     (your own pair: then  sudo infrastructure/prod/secret-owners.sh)
  2. Hand out the API key in $dir/api_key.txt (header X-API-Key), then delete the file;
     more keys: \`mlops api-key new NAME\`, append its line to $dir/api_keys.
  3. The UIs' login is '$ui_user' with the password in $dir/ui_password.txt.
  4. Start:  docker compose -f docker-compose.yml -f docker-compose.prod.yml up -d --build --wait
  See docs/deploy-vm.md.
NEXT
