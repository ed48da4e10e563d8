#!/usr/bin/env bash
# Starts a Docker engine in the background when none answers (CI machines and dev boxes without
# systemd); prints nothing and exits 0 when one is already up. Exits non-zero, saying why, when no
# engine can be started (the compose test then skips with that reason).
set -euo pipefail
log=${DOCKERD_LOG:-/var/log/dockerd-ecommerce-model-monitoring.log}
docker_cli() { if [[ -x /usr/bin/docker ]]; then /usr/bin/docker "$@"; else docker "$@"; fi; }
if docker_cli info >/dev/null 2>&1; then
  exit 0
fi
command -v dockerd >/dev/null || { echo "ensure_dockerd: dockerd not installed (make tools installs docker.io)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "ensure_dockerd: no Docker engine answers and starting one needs root" >&2; exit 1; }
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  systemctl start docker >/dev/null 2>&1 || true
fi
if ! docker_cli info >/dev/null 2>&1 && ! pgrep -x dockerd >/dev/null; then
  # Not a systemd machine (containers, CI): run it detached, logging to $log.
  nohup setsid dockerd >"$log" 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do
  docker_cli info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "ensure_dockerd: the Docker engine did not answer within 60s; last lines of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
