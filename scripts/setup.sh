#!/usr/bin/env bash
# Prepares a Debian 12 machine (as root) for harness: system packages, the
# Python environment in .venv, and a running Docker engine. Safe to re-run.
#
#   scripts/setup.sh                    everything every form and the tests need
#   scripts/setup.sh --containers-only  only what the scratch and alpine forms need
#                                       (for CI runners that measure containers only)
#
# An engine that already answers (a runner's own Docker) is used as it is:
# docker.io is installed and dockerd started only when none does.
set -euo pipefail
cd "$(dirname "$0")/.."

CONTAINER_PACKAGES=(
    musl-tools           # musl-gcc: the one static workload binary
    gcc libc6-dev        # compilers for dynamic test binaries
    busybox-static musl  # the Alpine-like stand-in base, built offline
    python3 python3-venv python3-pip git curl ca-certificates
)
OTHER_PACKAGES=(
    qemu-system-x86 qemu-utils  # the VM and Linux-unikernel forms
    mmdebstrap e2fsprogs cpio zstd xz-utils  # the Debian VM image
    linux-source-6.1 build-essential bc flex bison libelf-dev libssl-dev  # the specialised kernel
    texlive-latex-base texlive-latex-recommended  # pdflatex + booktabs: the LaTeX report compiles in tests
)

case "${1:-}" in
    "") PACKAGES=("${CONTAINER_PACKAGES[@]}" "${OTHER_PACKAGES[@]}") ;;
    --containers-only) PACKAGES=("${CONTAINER_PACKAGES[@]}") ;;
    *) echo "setup: unknown option ${1}; use no option, or --containers-only" >&2; exit 2 ;;
esac

log() { echo "setup: $*" >&2; }

# The Docker engine for the container forms, unless one is installed already.
command -v dockerd >/dev/null || PACKAGES+=(docker.io)

# Package lists read long ago name versions the archive has since replaced,
# and the cloud kernel is downloaded by version: refresh lists older than a day.
updated=""
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*InRelease' -mmin -1440 2>/dev/null)" ]; then
    log "refreshing the package lists (apt-get update)"
    apt-get update -qq && updated=yes
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    [ -n "$updated" ] || apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/var/log/harness-setup-apt.log 2>&1 \
        || { tail -20 /var/log/harness-setup-apt.log >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import harness, docker, psutil, tabulate, elftools, qemu.qmp, pytest_benchmark" 2>/dev/null \
    || [ pyproject.toml -nt .venv/.installed ]; then
    log "installing the Python environment (log: /var/log/harness-setup-pip.log)"
    { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[test]'; } \
        >/var/log/harness-setup-pip.log 2>&1 \
        || { tail -20 /var/log/harness-setup-pip.log >&2; exit 1; }
    touch .venv/.installed
fi

ping_engine() {
    DOCKER_HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}" timeout 5 .venv/bin/python -c \
        "import docker; docker.from_env().ping()" 2>/dev/null
}
if ! ping_engine; then
    if ! pgrep -x dockerd >/dev/null; then
        scripts/clear-stale-pidfiles /var/run/docker/containerd/containerd.pid /var/run/docker.pid
        log "starting dockerd (log: /var/log/harness-dockerd.log)"
        nohup dockerd >/var/log/harness-dockerd.log 2>&1 </dev/null &
    fi
    for _ in $(seq 1 60); do
        ping_engine && break
        sleep 0.5
    done
    ping_engine || { log "dockerd did not come up; see /var/log/harness-dockerd.log"
                     tail -20 /var/log/harness-dockerd.log >&2; exit 1; }
fi
log "ready"
