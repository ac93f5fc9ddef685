#!/usr/bin/env bash
# Entrypoint of the stack's Python image: secrets from files, then the service's command.
#
# Secrets of the servers we do not write ourselves (MLflow, Prefect, JupyterLab) come as
# VAR_FILE=/run/secrets/...: VAR is set from that file (trailing newlines dropped), and the
# file wins over an inline VAR, so docker-compose.prod.yml layers secrets on the development
# values of docker-compose.yml. A named file that is missing stops the container, naming the
# variable. Other *_FILE variables (a tool's config path) are left alone.
#
# With MLOPS_ENVIRONMENT=production it refuses to start while one of those variables still
# holds a development default (they all contain "mlops-dev-only"), naming the variables.
#
# The stack's own MLOPS_* variables are not touched here: the settings read MLOPS_*_FILE and
# refuse development defaults themselves, with the same messages (mlops_stack.settings), and
# that is the one implementation for them, in a container or not.
set -euo pipefail

ours() { case "$1" in MLOPS_*) return 0 ;; *) return 1 ;; esac; }

for name in $(compgen -e); do
  case "$name" in *_FILE) ;; *) continue ;; esac
  ours "$name" && continue
  path=${!name}
  case "$path" in /run/secrets/*) ;; *) continue ;; esac
  if [ ! -r "$path" ]; then
    echo "mlops-entrypoint: $name=$path: cannot read the file (is the secret created?)" >&2
    exit 64
  fi
  export "${name%_FILE}=$(<"$path")"
done

if [ "${MLOPS_ENVIRONMENT:-development}" = production ]; then
  leaked=()
  for name in $(compgen -e); do
    ours "$name" && continue
    case "${!name}" in *mlops-dev-only*) leaked+=("$name") ;; esac
  done
  if [ ${#leaked[@]} -gt 0 ]; then
    echo "mlops-entrypoint: production refuses the development default secret in ${leaked[*]};" \
         "set the real values (infrastructure/prod/init-secrets.sh makes them)" >&2
    exit 64
  fi
fi

exec "$@"
