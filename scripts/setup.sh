#!/usr/bin/env bash
# Fresh Debian 12 machine, as root: install what is missing, build berth, and run a command
# in a container made from the host's busybox.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
cargo build --release --workspace
bundle=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
scripts/make-busybox-rootfs.sh "$bundle/rootfs"
( cd "$bundle" && "$OLDPWD/target/release/berth-runc" spec )
# A non-interactive demo: print what the container sees of itself.
python3 - "$bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo \"hello from $(hostname): I am PID $$, uid $(id -u), and I see:\"; ps; ls /"]
c["hostname"] = "berth-demo"
json.dump(c, open(path, "w"), indent=2)
PY
echo "+ berth-runc run --bundle $bundle demo" >&2
target/release/berth-runc run --bundle "$bundle" "demo-$$"
