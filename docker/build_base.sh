#!/usr/bin/env bash
# Builds the local base image(s) from Debian packages, for machines that cannot pull from Docker Hub:
#   local/python:3.11-bookworm   Debian bookworm minbase + python3 (3.11), python3-venv, ca-certificates
#                                (stands in for python:3.11-slim: the Dockerfile's BASE_IMAGE)
# Skips an image that exists (FORCE=1 rebuilds). About a minute on a fresh machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IMAGE=${BASE_IMAGE:-local/python:3.11-bookworm}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-}
docker_cli() { if [[ -x /usr/bin/docker ]]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
if [[ -z ${FORCE:-} ]] && docker_cli image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "build_base: mmdebstrap missing (make tools installs it)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "build_base: mmdebstrap $SUITE -> $IMAGE"
# Docs, man pages and locales are dropped (as in the slim images); apt lists are emptied.
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  "$SUITE" "$tmp/rootfs.tar" ${MIRROR:+"$MIRROR"}
docker_cli import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$tmp/rootfs.tar" "$IMAGE" >/dev/null
echo "build_base: $IMAGE $(docker_cli image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
