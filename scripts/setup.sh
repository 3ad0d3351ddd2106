#!/usr/bin/env bash
# Prepares a fresh Debian machine (Python 3.11, root) to run and test StateMesh:
# system packages, then a virtual environment in .venv with the project installed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in libgmp-dev docker.io docker-registry busybox-static xfsprogs gcc python3-dev prometheus chromium chromium-driver haproxy nginx; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing system packages ${need_apt[*]} (run as root to install them)" >&2
        exit 1
    fi
    echo "setup: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch "$stamp"
fi
