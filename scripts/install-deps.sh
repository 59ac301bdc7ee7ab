#!/usr/bin/env bash
# Install what berth needs on Debian 12 (as root): the C pieces the build links or runs
# (libseccomp, gcc for the static test probe), busybox-static for offline root filesystems,
# iproute2 and procps for tests, skopeo as the image-format peer, and the reference runtimes,
# zstd and hyperfine for the benchmarks.
set -euo pipefail

packages=(gcc libc6-dev pkg-config libseccomp-dev busybox-static iproute2 nftables iperf3 procps crun runc hyperfine ca-certificates skopeo zstd docker-registry openssl tini util-linux python3 python3-pip)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    for dir in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
        [ -x "$dir/cargo" ] && export PATH="$dir:$PATH" && break
    done
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install a Rust toolchain (1.85 or newer) with rustup first" >&2
    exit 1
fi
# The Python Docker SDK the daemon's compatibility tests drive (docker-py 7.1).
if ! python3 -c 'import docker' >/dev/null 2>&1; then
    echo "installing the Python docker SDK (docker==7.1.0)" >&2
    pip3 install --quiet --break-system-packages 'docker==7.1.0' >/dev/null
fi
# The real docker CLI the daemon's compatibility tests drive; this machine image ships it.
if [ ! -x /usr/local/bin/docker ]; then
    echo "warning: /usr/local/bin/docker (docker CLI 28) is missing: berthd's CLI tests will fail" >&2
fi
