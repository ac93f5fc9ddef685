#!/usr/bin/env bash
# Checks the nginx configs with a real nginx, without Docker: each stack's files are laid out
# as its compose file mounts them (docker-compose.yml, docker-compose.prod.yml), over a copy
# of /etc/nginx in a private mount and network namespace; `nginx -t`, then a few requests that
# need no upstream (health, redirects and their Location, the prod login, /api/metrics refused,
# the landing page's static fallback, each route's body limit, the TLS cipher list, a repeated
# X-API-Key). Proxied routes answer 502 here: no Docker DNS at 127.0.0.11, which shows the
# route matched (and that nginx let the body through).
#
# Needs root (unshare), nginx (apt-get install nginx-light), curl, envsubst and openssl.
# The stand-in nginx image's nginx.conf is taken from MLOPS_DOCKER_TOOLS or ../shared/docker.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
tools=${MLOPS_DOCKER_TOOLS:-$repo/../shared/docker}
ngx=$repo/infrastructure/nginx

if [ "${1:-}" != --inside ]; then
  work=$(mktemp -d /var/tmp/nginx-check.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  # docker-compose.yml's mounts over the stand-in image's layout
  dev=$work/dev
  cp -a /etc/nginx "$dev"
  rm -rf "$dev/sites-enabled" "$dev/conf.d" && mkdir -p "$dev/conf.d"
  sed 's/^user .*/user root;/' "$tools/nginx/nginx.conf" >"$dev/nginx.conf"  # no nginx user here
  cp "$ngx/default.conf" "$dev/conf.d/default.conf"
  cp "$ngx/routes.conf" "$dev/routes.conf"
  cp "$ngx/open.conf" "$dev/api-policy.conf"
  cp "$ngx/open.conf" "$dev/ui-policy.conf"
  # docker-compose.prod.yml's
  prod=$work/prod
  cp -a /etc/nginx "$prod"
  rm -rf "$prod/sites-enabled" "$prod/conf.d"
  mkdir -p "$prod/templates"
  cp "$ngx/prod/nginx.conf" "$prod/nginx.conf"
  cp "$ngx/prod/default.conf.template" "$prod/templates/default.conf.template"
  cp "$ngx/routes.conf" "$prod/routes.conf"
  cp "$ngx/prod/api-limits.conf" "$prod/api-policy.conf"
  cp "$ngx/prod/ui-auth.conf" "$prod/ui-policy.conf"
  cp "$ngx/prod/security-headers.conf" "$prod/security-headers.conf"
  mkdir -p "$work/secrets" "$work/nginx-temp"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -keyout "$work/secrets/tls_key" -out "$work/secrets/tls_cert" 2>/dev/null
  printf 'admin:%s\n' "$(openssl passwd -apr1 check)" >"$work/secrets/htpasswd"
  exec unshare --mount --net --propagation private "$0" --inside "$work"
fi

work=$2
ip link set lo up 2>/dev/null || true
mkdir -p /run/secrets
mount --bind "$work/secrets" /run/secrets
mount -t tmpfs tmpfs /tmp
mount --bind "$ngx/html" /usr/share/nginx/html 2>/dev/null \
  || { mkdir -p /usr/share/nginx/html && mount --bind "$ngx/html" /usr/share/nginx/html; }
failed=0
expect() {  # expect CODE CURL_ARGS...: the status curl sees
  local want=$1 got; shift
  got=$(curl -sk -o /dev/null -w '%{http_code}' "$@")
  if [ "$got" = "$want" ]; then echo "  ok   $want $*"; else echo "  FAIL $got (want $want) $*"; failed=1; fi
}
expect_location() {  # expect_location LOCATION URL: the Location header of URL's redirect
  local want=$1 got
  got=$(curl -sk -o /dev/null -w '%{redirect_url}' -D - "$2" | sed -n 's/^[Ll]ocation: *//p' | tr -d '\r')
  if [ "$got" = "$want" ]; then echo "  ok   $2 -> $want"; else echo "  FAIL $2 -> '$got' (want $want)"; failed=1; fi
}
expect_body_limit() {  # expect_body_limit CODE BYTES URL: the status of a POST of BYTES bytes
  local want=$1 bytes=$2 url=$3 got
  got=$(head -c "$bytes" /dev/zero | curl -sk -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data-binary @- "$url")
  if [ "$got" = "$want" ]; then echo "  ok   $want for $bytes bytes to $url"
  else echo "  FAIL $got (want $want) for $bytes bytes to $url"; failed=1; fi
}
tls12_cipher() {  # tls12_cipher CIPHER: "accepted" or "refused" by the TLS listener
  if echo | openssl s_client -connect 127.0.0.1:8443 -tls1_2 -cipher "$1" 2>/dev/null \
     | grep -q "Cipher is $1"; then echo accepted; else echo refused; fi
}
check_nginx() {  # nginx -t, printing its complaint in full when it fails
  local out
  if out=$(nginx -t 2>&1); then tail -1 <<<"$out"; else echo "$out"; exit 1; fi
}

echo "== dev: docker-compose.yml's files"
mount --bind "$work/dev" /etc/nginx
check_nginx
nginx >>"$work/nginx.log" 2>&1
# the landing page is the dashboard's: without it, the static links saying so, with the 502
expect 502 http://127.0.0.1/
if curl -s http://127.0.0.1/ | grep -q 'Status unavailable'; then echo "  ok   / falls back to html/index.html"
else echo "  FAIL / does not fall back to html/index.html"; failed=1; fi
expect 404 http://127.0.0.1/index.html
expect 200 http://127.0.0.1/nginx-health
expect 301 http://127.0.0.1/api
expect 502 http://127.0.0.1/api/health
expect 502 http://127.0.0.1/api/metrics
expect 301 http://127.0.0.1/mlflow
expect 502 http://127.0.0.1/mlflow/
expect 502 http://127.0.0.1/dashboard/
expect 502 http://127.0.0.1/prefect/
expect 502 http://127.0.0.1/jupyter/
expect 301 http://127.0.0.1/prometheus
expect 502 http://127.0.0.1/prometheus/
# relative redirects: the published port differs from the one nginx listens on
expect_location /mlflow/ http://127.0.0.1/mlflow
expect_location /api/ http://127.0.0.1/api
# body limits by route (routes.conf): 413 at nginx, else the route's 502
expect_body_limit 413 70000 http://127.0.0.1/api/predict
expect_body_limit 502 60000 http://127.0.0.1/api/predict
expect_body_limit 502 1900000 http://127.0.0.1/api/predict/batch
expect_body_limit 413 2200000 http://127.0.0.1/api/predict/batch
expect_body_limit 413 600000 http://127.0.0.1/api/feedback
expect_body_limit 502 3000000 http://127.0.0.1/mlflow/ajax-api/2.0/mlflow-artifacts/artifacts/x
expect_body_limit 413 1100000 http://127.0.0.1/prefect/api/x
if curl -s http://127.0.0.1/prometheus/ | grep -qF -- '--profile observability up -d'; then echo "  ok   /prometheus/ says how to start it"
else echo "  FAIL /prometheus/ does not say how to start it"; failed=1; fi
nginx -s stop; sleep 1
umount /etc/nginx

echo "== prod: docker-compose.prod.yml's files (template rendered as the image does)"
mount --bind "$work/prod" /etc/nginx
# the nginx-temp volume of docker-compose.prod.yml
mkdir -p /var/cache/nginx
mount --bind "$work/nginx-temp" /var/cache/nginx
# shellcheck disable=SC2016  # envsubst's own list of variables, not the shell's
MLOPS_PUBLIC_HTTPS_PORT=443 envsubst '${MLOPS_PUBLIC_HTTPS_PORT}' \
  </etc/nginx/templates/default.conf.template >/tmp/default.conf
check_nginx
nginx >>"$work/nginx.log" 2>&1
expect 200 http://127.0.0.1:8080/nginx-health
expect 301 http://127.0.0.1:8080/mlflow/
expect 401 https://127.0.0.1:8443/
expect 502 -u admin:check https://127.0.0.1:8443/
expect 404 https://127.0.0.1:8443/api/metrics
expect 502 https://127.0.0.1:8443/api/health
for ui in mlflow prefect dashboard jupyter prometheus; do
  expect 401 "https://127.0.0.1:8443/$ui/"
  expect 502 -u admin:check "https://127.0.0.1:8443/$ui/"
done
# the http port sends to the published https one; nginx's own redirects stay relative
expect_location https://127.0.0.1:443/mlflow/?x=1 'http://127.0.0.1:8080/mlflow/?x=1'
expect_location /mlflow/ https://127.0.0.1:8443/mlflow
expect_location /api/ https://127.0.0.1:8443/api
expect_body_limit 413 70000 https://127.0.0.1:8443/api/predict
expect_body_limit 502 1900000 https://127.0.0.1:8443/api/predict/batch
# TLS 1.2: ECDHE with AES-GCM or ChaCha20 only
for cipher in ECDHE-RSA-AES128-GCM-SHA256 ECDHE-RSA-CHACHA20-POLY1305; do
  if [ "$(tls12_cipher "$cipher")" = accepted ]; then echo "  ok   TLS 1.2 $cipher accepted"
  else echo "  FAIL TLS 1.2 $cipher refused"; failed=1; fi
done
for cipher in AES128-SHA ECDHE-RSA-AES128-SHA AES128-GCM-SHA256 ECDHE-RSA-AES128-SHA256; do
  if [ "$(tls12_cipher "$cipher")" = refused ]; then echo "  ok   TLS 1.2 $cipher refused"
  else echo "  FAIL TLS 1.2 $cipher accepted"; failed=1; fi
done
# two X-API-Key headers: 400 at nginx where it joins them ($http_x_api_key, 1.23+); older
# nginx passes the request on (502 here) and the predictor answers 400
version=$(nginx -v 2>&1 | sed 's|.*nginx/||')
if printf '%s\n' 1.23.0 "$version" | sort -V -C; then dup=400; else dup=502; fi
expect "$dup" -H 'X-API-Key: a' -H 'X-API-Key: b' https://127.0.0.1:8443/api/predict
expect 502 -H 'X-API-Key: a' https://127.0.0.1:8443/api/predict
hsts=$(curl -sk -D - -o /dev/null -u admin:check https://127.0.0.1:8443/mlflow/ | grep -ci strict-transport || true)
if [ "$hsts" = 1 ]; then echo "  ok   HSTS on a UI route"; else echo "  FAIL no HSTS on a UI route"; failed=1; fi
nginx -s stop
exit $failed
