#!/usr/bin/env bash
# Entrypoint of the stack's Python image: secrets from files, then the service's command.
#
# For every VAR_FILE=/run/secrets/... in the environment, VAR is set from that file (trailing
# newlines dropped; other *_FILE variables, such as a tool's config path, are left alone). The file wins over an inline VAR, so docker-compose.prod.yml layers secrets on the
# development values of docker-compose.yml. This covers the servers we do not write ourselves
# (MLFLOW_BACKEND_STORE_URI_FILE, PREFECT_SERVER_DATABASE_CONNECTION_URL_FILE,
# JUPYTER_TOKEN_FILE); the stack's own MLOPS_*_FILE settings read the same files themselves.
# A named file that is missing stops the container, naming the variable.
#
# With MLOPS_ENVIRONMENT=production it refuses to start while any variable still holds a
# development default (they all contain "mlops-dev-only"), naming the variables.
set -euo pipefail

for name in $(compgen -e); do
  case "$name" in *_FILE) ;; *) continue ;; esac
  path=${!name}
  case "$path" in /run/secrets/*) ;; *) continue ;; esac
  if [ ! -r "$path" ]; then
    echo "mlops-entrypoint: $name=$path: no such file or not readable (is the secret created?)" >&2
    exit 64
  fi
  export "${name%_FILE}=$(<"$path")"
done

if [ "${MLOPS_ENVIRONMENT:-development}" = production ]; then
  leaked=()
  for name in $(compgen -e); do
    case "${!name}" in *mlops-dev-only*) leaked+=("$name") ;; esac
  done
  if [ ${#leaked[@]} -gt 0 ]; then
    echo "mlops-entrypoint: production refuses the development default secret in ${leaked[*]};" \
         "set the real values (infrastructure/prod/init-secrets.sh makes them)" >&2
    exit 64
  fi
fi

exec "$@"
