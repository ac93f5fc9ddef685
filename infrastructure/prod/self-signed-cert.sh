#!/usr/bin/env bash
# A self-signed TLS pair for trying the prod stack: secrets/tls_cert and secrets/tls_key
# (or $MLOPS_SECRETS_DIR), for MLOPS_PUBLIC_HOST (localhost) and 127.0.0.1, valid 30 days.
# Browsers and clients warn about it; use a real certificate on a VM (docs/deploy-vm.md).
# Never overwrites an existing pair. Needs root, as init-secrets.sh: the key goes to nginx's
# user, 0600 (secret-owners.sh).
#
#   sudo infrastructure/prod/self-signed-cert.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" -ne 0 ]; then
  echo "self-signed-cert.sh: run it as root (sudo): the key goes to nginx's user" \
       "(secret-owners.sh)" >&2
  exit 1
fi
dir=${MLOPS_SECRETS_DIR:-secrets}
host=${MLOPS_PUBLIC_HOST:-localhost}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"
if [ -e "$dir/tls_cert" ] || [ -e "$dir/tls_key" ]; then
  echo "kept the existing $dir/tls_cert and $dir/tls_key"
  exit 0
fi
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$host" \
  -addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/tls_key" -out "$dir/tls_cert" 2>/dev/null
echo "self-signed certificate for $host in $dir/tls_cert (key: $dir/tls_key), valid 30 days"
# nginx runs as an unprivileged user in its container and reads both through the mount
echo "owners (secret-owners.sh):"
MLOPS_SECRETS_DIR=$dir infrastructure/prod/secret-owners.sh
