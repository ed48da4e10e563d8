#!/usr/bin/env bash
# Creates the project virtualenv, installing Debian's python3-venv first when the interpreter lacks it.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if [[ -x $venv/bin/python ]]; then
  exit 0
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "ensure_venv: installing python${ver}-venv"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "python${ver}-venv" >/dev/null || \
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
