#!/usr/bin/env bash
# Create the secrets of a new VM for docker-compose.prod.yml, as files in ./secrets (or
# $MLOPS_SECRETS_DIR). Random values; never overwrites a file that exists, so it is safe to
# run again after adding a setting, and it never rotates a password behind a running database.
#
#   infrastructure/prod/init-secrets.sh
#
# Needs openssl and sha256sum. Optional: MLOPS_ALERT_WEBHOOK_URL (written to
# alert_webhook_url; empty: no webhook), POSTGRES_USER (mlops), MLOPS_API_KEY_NAME (default),
# MLOPS_UI_USER (admin).
#
# The compose file mounts each file at /run/secrets/<name>. Files the services read are 0644
# (the containers' users differ), in a 0700 directory; the plain API key and UI password, for
# you to hand out, are 0600 and never mounted.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${MLOPS_SECRETS_DIR:-secrets}
user=${POSTGRES_USER:-mlops}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"

created=()
kept=()
# write NAME MODE CONTENT: only when NAME does not exist yet
write() {
  local path="$dir/$1" mode=$2
  if [ -e "$path" ]; then kept+=("$1"); return; fi
  printf '%s' "$3" >"$path"
  chmod "$mode" "$path"
  created+=("$1")
}
random() { openssl rand -hex "${1:-24}"; }

write postgres_password 0644 "$(random)"
password=$(<"$dir/postgres_password")
for db in mlflow prefect monitoring; do
  driver=psycopg2
  [ "$db" = prefect ] && driver=asyncpg
  write "${db}_db_url" 0644 "postgresql+$driver://$user:$password@postgres:5432/$db"
done

key_name=${MLOPS_API_KEY_NAME:-default}
if [ ! -e "$dir/api_keys" ]; then
  key=$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')
  write api_key.txt 0600 "$key"
  write api_keys 0644 "$key_name:$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)"
else
  kept+=(api_keys)
fi

ui_user=${MLOPS_UI_USER:-admin}
if [ ! -e "$dir/htpasswd" ]; then
  ui_password=$(random 16)
  write ui_password.txt 0600 "$ui_password"
  write htpasswd 0644 "$ui_user:$(openssl passwd -6 "$ui_password")"
else
  kept+=(htpasswd)
fi

write jupyter_token 0644 "$(random)"
write alert_webhook_url 0644 "${MLOPS_ALERT_WEBHOOK_URL:-}"

echo "secrets in $dir/"
[ ${#created[@]} -eq 0 ] || echo "  created: ${created[*]}"
[ ${#kept[@]} -eq 0 ] || echo "  kept (already there): ${kept[*]}"
cat <<NEXT

Next steps:
  1. TLS: put the certificate chain in $dir/tls_cert and its key in $dir/tls_key
     (e.g. Let's Encrypt's fullchain.pem and privkey.pem), or to try it out:
       infrastructure/prod/self-signed-cert.sh
  2. Hand out the API key in $dir/api_key.txt (header X-API-Key), then delete the file;
     more keys: \`mlops api-key new NAME\`, append its line to $dir/api_keys.
  3. The UIs' login is '$ui_user' with the password in $dir/ui_password.txt.
  4. Start:  docker compose -f docker-compose.yml -f docker-compose.prod.yml up -d --build --wait
  See docs/deploy-vm.md.
NEXT
