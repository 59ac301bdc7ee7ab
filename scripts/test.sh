#!/usr/bin/env bash
# The whole test suite, as root on the real kernel: formatting and lints, every crate's
# tests (real containers, cgroups, seccomp), then the runtime suite once more against runc
# to prove the tests themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
if [ "$(id -u)" != 0 ]; then
    echo "error: the tests create real containers; run them as root" >&2
    exit 1
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace
echo "== the runtime suite against runc (proves the tests, not berth) ==" >&2
BERTH_TEST_RUNTIME=$(command -v runc) cargo test -p berth-runc --test runtime --test failures --test terminal
