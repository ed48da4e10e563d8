#!/usr/bin/env bash
# Builds every image the compose test needs on a machine that cannot pull from Docker Hub:
#   1. the local base image (docker/build_base.sh: Debian bookworm + python3, from Debian packages)
#   2. a wheels image holding the wheels of pip's find-links directories (the local torch CPU wheel)
#   3. the project image (Dockerfile) FROM the local base, pip reaching its index with this
#      machine's pip settings and CA bundle passed as build secrets (never stored in a layer)
#   4. the stand-ins for upstream images (docker/standins/): Prometheus and Alertmanager from
#      Debian's packages with prom/*'s paths, ports and entry points; the project's Slack/SMTP
#      sink for mailpit
# Layers are cached: a second run with unchanged sources takes seconds.
#
# Uses BuildKit through the docker CLI (DOCKER_BUILDKIT=1): the buildx plugin when the CLI has it,
# else Debian's docker.io 20.10 CLI, whose built-in BuildKit client has --secret. (Debian's
# docker-compose v1 builds with the classic builder, which has no RUN --mount: compose does not build
# here, it runs what this script built.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
BASE_IMAGE=${BASE_IMAGE:-local/python:3.11-bookworm}
APP_IMAGE=${APP_IMAGE:-ecommerce-model-monitoring:0.1.0}
STANDIN_TAG=${STANDIN_TAG:-bookworm}
QUIET=${QUIET:---quiet}

# A docker CLI that can build with BuildKit and --secret.
pick_cli() {
  local c
  for c in docker /usr/bin/docker; do
    command -v "$c" >/dev/null || continue
    if "$c" buildx version >/dev/null 2>&1; then echo "$c"; return; fi
  done
  for c in /usr/bin/docker docker; do
    command -v "$c" >/dev/null || continue
    # A pre-23 CLI builds with its built-in BuildKit client when DOCKER_BUILDKIT=1.
    local v; v=$("$c" version --format '{{.Client.Version}}' 2>/dev/null || true)
    if [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} < 23)); then echo "$c"; return; fi
  done
  echo "build_images: no docker CLI with BuildKit (install buildx, or Debian's docker.io)" >&2
  return 1
}
DOCKER=$(pick_cli)
export DOCKER_BUILDKIT=1

bash "$here/build_base.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# pip settings from this machine's (pip config list): http(s) indexes and timeout go in a pip.conf
# secret; file:// indexes and find-links directories cannot be seen from a build, so find-links
# wheels go in the wheels image instead; the CA bundle is its own secret.
pip_get() { python3 -m pip config get "$1" 2>/dev/null || true; }
write_pip_conf() {
  local idx extra="" u to
  echo "[global]"
  idx=$(pip_get global.index-url)
  if [[ $idx == http* ]]; then echo "index-url = $idx"; fi
  for u in $(pip_get global.extra-index-url) ${PIP_EXTRA_INDEX_URL:-}; do
    if [[ $u == http* ]]; then extra+=" $u"; fi
  done
  if [[ -n $extra ]]; then echo "extra-index-url =$extra"; fi
  to=$(pip_get global.timeout); to=${to:-${PIP_DEFAULT_TIMEOUT:-}}
  if [[ -n $to ]]; then echo "timeout = $to"; fi
}
write_pip_conf > "$tmp/pip.conf"
cert=${PIP_CERT:-$(pip_get global.cert)}
[[ -n $cert && -f $cert ]] || cert=/etc/ssl/certs/ca-certificates.crt
[[ -f $cert ]] || { : > "$tmp/empty.crt"; cert=$tmp/empty.crt; }

mkdir -p "$tmp/wheels"
for d in $(pip_get global.find-links) ${PIP_FIND_LINKS:-}; do
  for f in "$d"/torch-*.whl; do   # only the torch wheel: the one the default index serves too big
    [[ -f $f && ! -e $tmp/wheels/${f##*/} ]] || continue
    ln "$f" "$tmp/wheels/" 2>/dev/null || cp "$f" "$tmp/wheels/"
  done
done
if compgen -G "$tmp/wheels/*.whl" >/dev/null; then
  sum=$(cd "$tmp/wheels" && ls -l --time-style=+%s *.whl | awk '{print $5, $6, $7}' | sha256sum | cut -c1-12)
  WHEELS_IMAGE=local/pip-wheels:$sum
  if ! "$DOCKER" image inspect "$WHEELS_IMAGE" >/dev/null 2>&1; then
    printf 'FROM scratch\nCOPY *.whl /\n' > "$tmp/wheels/Dockerfile"
    "$DOCKER" build $QUIET -t "$WHEELS_IMAGE" "$tmp/wheels" >/dev/null
  fi
  TORCH_INDEX_URL=""   # torch from the wheels image, the rest from pip's index
else
  WHEELS_IMAGE=scratch
  TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
fi

echo "build_images: $APP_IMAGE (base $BASE_IMAGE, wheels $WHEELS_IMAGE)"
"$DOCKER" build $QUIET -t "$APP_IMAGE" -f "$repo/Dockerfile" \
  --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg WHEELS_IMAGE="$WHEELS_IMAGE" \
  --build-arg TORCH_INDEX_URL="$TORCH_INDEX_URL" \
  --secret id=pip_conf,src="$tmp/pip.conf" --secret id=pip_cert,src="$cert" \
  "$repo" >/dev/null

for name in prometheus alertmanager; do
  echo "build_images: local/$name-standin:$STANDIN_TAG"
  "$DOCKER" build $QUIET -t "local/$name-standin:$STANDIN_TAG" -f "$here/standins/$name.Dockerfile" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" "$here/standins" >/dev/null
done
echo "build_images: local/mailpit-standin:$STANDIN_TAG"
"$DOCKER" build $QUIET -t "local/mailpit-standin:$STANDIN_TAG" -f "$here/standins/mailpit.Dockerfile" \
  --build-arg APP_IMAGE="$APP_IMAGE" \
  --secret id=pip_conf,src="$tmp/pip.conf" --secret id=pip_cert,src="$cert" \
  "$here/standins" >/dev/null
"$DOCKER" images --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
  | grep -E "^(${APP_IMAGE%%:*}|local/)" | sort
