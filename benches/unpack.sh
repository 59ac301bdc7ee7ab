#!/usr/bin/env bash
# Benchmark: unpack throughput of a ~100 MB Debian tree (taken from this Debian host's /usr),
# gzip and zstd, berth-image (decompress + sha256 diff ID + whiteout-aware write) against
# GNU tar extracting the same file. Timings only; nothing here passes or fails.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p berth-image --example unpack >/dev/null 2>&1
unpack=$PWD/target/release/examples/unpack
work=$(mktemp -d /var/tmp/berth-unpack-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
# ~100 MB of a Debian system: libraries, binaries and share data, in a fixed order.
python3 - "$work/list" <<'PY'
import os, sys
total, out = 0, []
for top in ["usr/bin", "usr/lib/x86_64-linux-gnu", "usr/share/perl", "usr/share/zoneinfo", "usr/share/locale"]:
    for root, dirs, files in os.walk("/" + top):
        dirs.sort()
        out.append(root[1:])
        for f in sorted(files):
            p = os.path.join(root, f)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            out.append(p[1:])
            total += st.st_size
            if total > 100_000_000:
                break
        if total > 100_000_000:
            break
    if total > 100_000_000:
        break
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
tar -C / --no-recursion -cf "$work/layer.tar" -T "$work/list" 2>/dev/null
size=$(stat -c %s "$work/layer.tar")
gzip -1 -c "$work/layer.tar" > "$work/layer.tar.gz"
zstd -q -3 -c "$work/layer.tar" > "$work/layer.tar.zst"
diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
echo "layer: $((size / 1000000)) MB uncompressed, $(( $(stat -c %s "$work/layer.tar.gz") / 1000000 )) MB gzip, $(( $(stat -c %s "$work/layer.tar.zst") / 1000000 )) MB zstd" >&2
cd "$work"
# GNU tar needs its directory to exist; berth creates the snapshot itself (atomically).
hyperfine -N --warmup 1 --runs "${1:-5}" --export-json results.json \
    --prepare "bash -c 'rm -rf $work/out && mkdir $work/out'" "tar -C $work/out -xzf layer.tar.gz" \
    --prepare "rm -rf $work/out" "$unpack layer.tar.gz $work/out $diff_id" \
    --prepare "bash -c 'rm -rf $work/out && mkdir $work/out'" "tar -C $work/out --zstd -xf layer.tar.zst" \
    --prepare "rm -rf $work/out" "$unpack layer.tar.zst $work/out $diff_id" >&2
python3 - results.json "$size" <<'PY'
import json, sys
size = int(sys.argv[2])
for r in json.load(open(sys.argv[1]))["results"]:
    cmd = r["command"]
    who = "berth" if "unpack " in cmd else "GNU tar"
    fmt = "zstd" if "zst" in cmd else "gzip"
    print(f'{who:8s} {fmt}: median {r["median"]*1000:7.0f} ms  ({size / r["median"] / 1e6:6.0f} MB/s uncompressed)')
PY
