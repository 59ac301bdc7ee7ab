#!/usr/bin/env bash
# Benchmark: cold pull (download + verify + unpack, ready to run) and push of a Debian
# bookworm minbase image through a loopback CNCF distribution registry, page cache dropped
# before each pull. berth (gzip and zstd layers), and docker / podman side by side when
# present (BENCH_PEERS=0 skips them). Timings only; nothing here passes or fails.
#
# Usage: benches/pull.sh          (makes the image once with debootstrap, in $BENCH_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_DIR:-/var/tmp/berth-bench-pull}
runs=${BENCH_RUNS:-5}
mkdir -p "$work"
cargo build --release -p berth-registry --bins >/dev/null 2>&1
br=$PWD/target/release/berth-registry
command -v hyperfine >/dev/null || scripts/install-deps.sh

[ -f "$work/source/metadata/tags.json" ] || scripts/make-debian-image.sh "$work/source"

# Everything written during the runs lives on a fresh journaled ext4 (a loop mount): this
# machine's root filesystem has no journal, and there ext4 scans for recently deleted inodes
# on every create, so a run after `rm -rf` of the previous one measures that scan instead.
fs=$work/mnt
mkdir -p "$fs"
if ! mountpoint -q "$fs"; then
    rm -f "$work/fs.img"
    truncate -s 16G "$work/fs.img"
    mkfs.ext4 -q -F "$work/fs.img"
    mount -o loop "$work/fs.img" "$fs"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $fs/registry}, delete: {enabled: true}}
http: {addr: $reg}
YML
# (Re)start the registry; its pid in a file, since hyperfine's --prepare runs in a new shell.
cat > "$work/restart-registry.sh" <<SH
#!/usr/bin/env bash
[ -f "$work/registry.pid" ] && kill "\$(cat "$work/registry.pid")" 2>/dev/null && sleep 0.2
[ "\${1:-}" = empty ] && rm -rf "$fs/registry"
setsid docker-registry serve "$work/registry.yml" >/dev/null 2>&1 < /dev/null &
echo \$! > "$work/registry.pid"
for _ in \$(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
SH
chmod +x "$work/restart-registry.sh"
cleanup() {
    [ -f "$work/registry.pid" ] && kill "$(cat "$work/registry.pid")" 2>/dev/null || true
    [ -f /run/berth-bench-docker.pid ] && kill "$(cat /run/berth-bench-docker.pid)" 2>/dev/null || true
    rm -f "$work/registry.pid"
    # dockerd sets the FORWARD policy to DROP; put it back.
    iptables -P FORWARD ACCEPT 2>/dev/null || true
    sleep 0.5
    umount "$fs" 2>/dev/null || umount -l "$fs" 2>/dev/null || true
    rm -f "$work/fs.img"
}
trap cleanup EXIT
"$work/restart-registry.sh" empty

# Seed the registry: the image with gzip layers and with zstd layers.
"$br" --data-root "$work/source" tag debian:bookworm "$reg/debian:gzip"
"$br" --data-root "$work/source" tag debian:bookworm "$reg/debian:zstd"
"$br" --data-root "$work/source" push -q "$reg/debian:gzip"
"$br" --data-root "$work/source" push -q --compression zstd "$reg/debian:zstd"
layer=$(du -sb "$fs/registry/docker/registry/v2/blobs" | cut -f1)
echo "registry holds $((layer / 1000000)) MB (gzip + zstd layers)"

drop='sync; echo 3 > /proc/sys/vm/drop_caches'
cmds=(
    -n "berth pull (gzip)" --prepare "rm -rf $fs/pull; $drop" "$br --data-root $fs/pull pull -q $reg/debian:gzip"
    -n "berth pull (zstd)" --prepare "rm -rf $fs/pull; $drop" "$br --data-root $fs/pull pull -q $reg/debian:zstd"
)
blob=$(python3 - "$work/source" <<'PY'
import json, sys
root = sys.argv[1]
tags = json.load(open(f"{root}/metadata/tags.json"))
image = tags["docker.io/library/debian:bookworm"].split(":")[1]
rec = json.load(open(f"{root}/metadata/images/{image}.json"))
print(f"{root}/content/blobs/sha256/" + rec["layers"][0]["digest"].split(":")[1])
PY
)
cmds+=(-n "gzip -dc of the layer blob alone" --prepare "$drop" "gzip -dc $blob > /dev/null")

if [ "${BENCH_PEERS:-1}" = 1 ] && command -v dockerd >/dev/null; then
    sock=/run/berth-bench-docker.sock
    dockerd --data-root "$fs/docker" --exec-root /run/berth-bench-docker -H "unix://$sock" \
        --pidfile /run/berth-bench-docker.pid --iptables=false --ip6tables=false --bridge=none \
        >"$work/dockerd.log" 2>&1 &
    for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.1; done
    d="docker -H unix://$sock"
    cmds+=(-n "docker pull" --prepare "$d rmi -f $reg/debian:gzip >/dev/null 2>&1 || true; $d image prune -af >/dev/null 2>&1; $drop" "$d pull -q $reg/debian:gzip")
fi
if [ "${BENCH_PEERS:-1}" = 1 ] && command -v podman >/dev/null; then
    p="podman --root $fs/podman --runroot /run/berth-bench-podman"
    cmds+=(-n "podman pull" --prepare "$p rmi -af >/dev/null 2>&1 || true; $drop" "$p pull -q --tls-verify=false $reg/debian:gzip")
fi
hyperfine --runs "$runs" --style basic "${cmds[@]}"

# Push to an empty registry: the registry is restarted on empty storage before each run.
push_prep="$work/restart-registry.sh empty"
pcmds=(
    -n "berth push (gzip)" --prepare "$push_prep" "$br --data-root $work/source push -q $reg/debian:gzip"
)
if [ "${BENCH_PEERS:-1}" = 1 ] && command -v dockerd >/dev/null; then
    $d pull -q "$reg/debian:gzip" >/dev/null
    pcmds+=(-n "docker push" --prepare "$push_prep" "$d push -q $reg/debian:gzip")
fi
if [ "${BENCH_PEERS:-1}" = 1 ] && command -v podman >/dev/null; then
    $p pull -q --tls-verify=false "$reg/debian:gzip" >/dev/null
    pcmds+=(-n "podman push" --prepare "$push_prep" "$p push -q --tls-verify=false $reg/debian:gzip")
fi
hyperfine --runs "$runs" --style basic "${pcmds[@]}"
