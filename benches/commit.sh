#!/usr/bin/env bash
# Benchmark: `commit` of a container with 10 000 changed files (tar + gzip into the content
# store + unpack into a snapshot + config and manifest). Timings only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p berth-image --example commit_bench >/dev/null 2>&1
for i in 1 2 3; do target/release/examples/commit_bench "${1:-10000}"; done
