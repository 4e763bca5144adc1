#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) for harness: system packages, the
# Python environment in .venv, and a running Docker engine. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
    docker.io            # the Docker engine (dockerd) for the container forms
    musl-tools           # musl-gcc: the one static workload binary
    gcc libc6-dev        # compilers for dynamic test binaries
    busybox-static musl  # the Alpine-like stand-in base, built offline
    qemu-system-x86 qemu-utils  # the VM and Linux-unikernel forms
    mmdebstrap e2fsprogs cpio zstd xz-utils  # the Debian VM image
    linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev  # the specialised kernel
    python3 python3-venv python3-pip git curl ca-certificates
    texlive-latex-base texlive-latex-recommended  # pdflatex + booktabs: the LaTeX report compiles in tests
)

log() { echo "setup: $*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/harness-apt.log 2>&1 \
        || { tail -20 /tmp/harness-apt.log >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import harness, docker, psutil, tabulate, elftools, qemu.qmp, pytest_benchmark" 2>/dev/null \
    || [ pyproject.toml -nt .venv/.installed ]; then
    log "installing the Python environment"
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[test]'
    touch .venv/.installed
fi

if ! docker_ok=$(DOCKER_HOST=unix:///var/run/docker.sock timeout 5 .venv/bin/python -c \
        "import docker; docker.from_env().ping()" 2>/dev/null; echo $?) || [ "$docker_ok" != 0 ]; then
    if ! pgrep -x dockerd >/dev/null; then
        log "starting dockerd (log: /var/log/harness-dockerd.log)"
        nohup dockerd >/var/log/harness-dockerd.log 2>&1 </dev/null &
    fi
    for _ in $(seq 1 60); do
        DOCKER_HOST=unix:///var/run/docker.sock timeout 5 .venv/bin/python -c \
            "import docker; docker.from_env().ping()" 2>/dev/null && break
        sleep 0.5
    done
    DOCKER_HOST=unix:///var/run/docker.sock .venv/bin/python -c "import docker; docker.from_env().ping()" \
        || { log "dockerd did not come up; see /var/log/harness-dockerd.log"; tail -20 /var/log/harness-dockerd.log >&2; exit 1; }
fi
log "ready"
