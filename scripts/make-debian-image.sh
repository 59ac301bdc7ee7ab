#!/usr/bin/env bash
# Make a Debian image offline-capable: debootstrap a minimal Debian 12 from the machine's
# configured Debian mirror, then import it into berth's store as debian:bookworm.
# Usage: scripts/make-debian-image.sh [DATA_ROOT] (default /var/lib/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
data_root=${1:-/var/lib/berth}
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
# The mirror apt already uses on this machine.
mirror=$(grep -rhoE '^deb(\s+\[[^]]*\])?\s+\S+' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print $NF}' | head -1 || true)
if [ -z "$mirror" ]; then
    mirror=$(grep -rhoE '^URIs:\s*\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d /var/tmp/berth-debian.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap bookworm from $mirror ..." >&2
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >&2
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
cargo build --release -p berth-image --example import_dir >/dev/null 2>&1
target/release/examples/import_dir "$data_root" "$rootfs" debian:bookworm bash
