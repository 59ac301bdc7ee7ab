#!/usr/bin/env bash
# Benchmark: create + start + wait + delete of /bin/true from one busybox bundle, median
# over N runs (default 200), `berth-runc run` side by side with `crun run` and `runc run`.
# Timings only; nothing here passes or fails.
#
# crun refuses hybrid cgroup hosts whose hugetlb controller sits on the v2 mount: for the
# comparison the script mounts hugetlb as a v1 hierarchy at /sys/fs/cgroup/hugetlb when it
# is missing, and unmounts it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200}
cargo build --release -p berth-runc >/dev/null
bundle=$(mktemp -d /tmp/berth-bench.XXXXXX)
mounted_hugetlb=
cleanup() {
    rm -rf "$bundle"
    if [ -n "$mounted_hugetlb" ]; then umount /sys/fs/cgroup/hugetlb && rmdir /sys/fs/cgroup/hugetlb; fi
}
trap cleanup EXIT
scripts/make-busybox-rootfs.sh "$bundle/rootfs" 2>/dev/null
( cd "$bundle" && runc spec )
python3 - "$bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"))
PY
if [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ] && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb none /sys/fs/cgroup/hugetlb 2>/dev/null && mounted_hugetlb=1 || rmdir /sys/fs/cgroup/hugetlb
fi
berth=$PWD/target/release/berth-runc
cd "$bundle"
hyperfine -N --warmup 10 --runs "$runs" --export-json "$bundle/results.json" \
    "$berth run bench-berth" "crun run bench-crun" "runc run bench-runc" >&2
python3 - "$bundle/results.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f'{r["command"].split()[0].rsplit("/",1)[-1]:12s} median {r["median"]*1000:6.2f} ms   mean {r["mean"]*1000:6.2f} ms   min {r["min"]*1000:6.2f} ms')
PY
