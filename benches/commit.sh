#!/usr/bin/env bash
# Benchmark: `commit` of a container with 10 000 changed files (tar + gzip into the content
# store + unpack into a snapshot + config and manifest). Timings only.
#
# The data root is a tmpfs: on this machine's disk (mounted with `discard`) each run's
# cleanup of ~20 000 files queues discards that slow every later metadata operation, so
# disk runs measure the previous run rather than berth.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p berth-image --example commit_bench >/dev/null 2>&1
scratch=$(mktemp -d /tmp/berth-commit-tmpfs.XXXXXX)
mount -t tmpfs -o size=2g tmpfs "$scratch"
trap 'umount "$scratch"; rmdir "$scratch"' EXIT
for i in 1 2 3; do TMPDIR=$scratch target/release/examples/commit_bench "${1:-10000}"; done
