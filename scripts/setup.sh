#!/usr/bin/env bash
# Fresh Debian 12 machine, as root: install what is missing, build berth, start berthd on
# /run/berth/berth.sock (data in /var/lib/berth) unless it already runs, give it an offline
# busybox image, and run a container through the real docker CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
cargo build --release --workspace
sock=/run/berth/berth.sock
export DOCKER_HOST=unix://$sock
docker=/usr/local/bin/docker
if ! $docker version >/dev/null 2>&1; then
    mkdir -p /run/berth /var/log
    echo "+ starting berthd (log: /var/log/berthd.log)" >&2
    setsid "$PWD/target/release/berthd" -H "unix://$sock" --data-root /var/lib/berth \
        </dev/null >>/var/log/berthd.log 2>&1 &
    for _ in $(seq 100); do $docker version >/dev/null 2>&1 && break; sleep 0.1; done
    $docker version >/dev/null || { tail -20 /var/log/berthd.log >&2; exit 1; }
fi
if ! $docker image inspect busybox >/dev/null 2>&1; then
    rootfs=$(mktemp -d /tmp/berth-busybox.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    scripts/make-busybox-rootfs.sh "$rootfs/fs" >/dev/null
    tar -C "$rootfs/fs" -c . | $docker import -c 'CMD ["sh"]' - busybox:latest >/dev/null
fi
echo "+ DOCKER_HOST=$DOCKER_HOST docker run --rm --hostname berth-demo busybox ..." >&2
$docker run --rm --hostname berth-demo busybox \
    sh -c 'echo "hello from $(hostname): I am PID $$, uid $(id -u), and I see:"; ps; ls /'
echo "berthd is serving $DOCKER_HOST: export DOCKER_HOST=$DOCKER_HOST and use docker as usual." >&2
