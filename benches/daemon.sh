#!/usr/bin/env bash
# Benchmark: berthd side by side with Debian's dockerd (docker.io, + runc) and podman (+ crun),
# in one sitting, through the same docker CLI where the engine speaks the Engine API.
#   - docker run --rm --network none busybox true (median of N, default 50)
#   - 50 detached `sleep` containers: start time, host memory, per-container process RSS
#   - ps with 50 running, rm -f of the 50
# The lean-client figures (no docker CLI) come from `cargo bench -p berthd --bench api`.
# Timings only; nothing here passes or fails. Needs root; installs docker.io and podman.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
for p in docker.io podman hyperfine curl; do
    dpkg -s "$p" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
done
cargo build --release --workspace >/dev/null
DOCKER=/usr/local/bin/docker
work=$(mktemp -d /var/tmp/berth-daemon-bench.XXXXXX)
run=/run/bdb-$$
mkdir -p "$run"
berthd_pid= dockerd_pid= mounted_hugetlb=
forward=$(iptables -S FORWARD 2>/dev/null | head -1 || true)
cleanup() {
    set +e
    for h in "unix://$run/berth.sock" "unix://$run/docker.sock"; do
        ids=$($DOCKER -H "$h" ps -aq 2>/dev/null) && [ -n "$ids" ] && $DOCKER -H "$h" rm -f $ids >/dev/null 2>&1
    done
    podman rm -af >/dev/null 2>&1
    podman rmi -f localhost/busybox:latest >/dev/null 2>&1
    [ -n "$berthd_pid" ] && kill "$berthd_pid" && wait "$berthd_pid"
    [ -n "$dockerd_pid" ] && kill "$dockerd_pid" && wait "$dockerd_pid"
    target/release/berthd --data-root "$work/berth" --exec-root "$run/berth" \
        --config-file "$work/berthd.json" --teardown-networks 2>/dev/null
    # dockerd sets the FORWARD policy to DROP: put back what was there.
    [ "$forward" = "-P FORWARD ACCEPT" ] && iptables -P FORWARD ACCEPT
    if [ -n "$mounted_hugetlb" ]; then umount /sys/fs/cgroup/hugetlb && rmdir /sys/fs/cgroup/hugetlb; fi
    umount -R "$work"/docker/* 2>/dev/null
    rm -rf "$work" "$run"
}
trap cleanup EXIT

# crun (podman's runtime) refuses hybrid hosts whose hugetlb controller sits on the v2 mount.
if [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ] && ! mountpoint -q /sys/fs/cgroup/hugetlb; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb none /sys/fs/cgroup/hugetlb 2>/dev/null && mounted_hugetlb=1 || rmdir /sys/fs/cgroup/hugetlb
fi

scripts/make-busybox-rootfs.sh "$work/rootfs" >/dev/null 2>&1
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

echo '{"bridge": "bdb0", "bip": "10.196.0.1/24"}' >"$work/berthd.json"
BERTHD_LOG=warn target/release/berthd -H "unix://$run/berth.sock" --data-root "$work/berth" \
    --exec-root "$run/berth" --config-file "$work/berthd.json" 2>"$work/berthd.log" &
berthd_pid=$!
dockerd -H "unix://$run/docker.sock" --data-root "$work/docker" --exec-root "$run/docker" \
    --pidfile "$run/docker.pid" --bridge=none --iptables=false --ip-masq=false \
    --containerd-namespace berth-bench --containerd-plugins-namespace berth-bench-plugins \
    >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for s in berth docker; do
    for _ in $(seq 200); do [ -S "$run/$s.sock" ] && $DOCKER -H "unix://$run/$s.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
    $DOCKER -H "unix://$run/$s.sock" import -c 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
done
# Root here lacks CAP_SYS_RESOURCE: podman's default rlimits (nofile and nproc raised to
# the maximum) cannot be set (even with --ulimit host), so give it Docker's usual 1024.
printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n' >"$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf
podman import -c 'CMD ["sh"]' "$work/busybox.tar" localhost/busybox:latest >/dev/null

B="$DOCKER -H unix://$run/berth.sock"
D="$DOCKER -H unix://$run/docker.sock"
P="podman"

echo "== docker run --rm --network none busybox true (median of $runs)"
hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/run.json" \
    -n berthd "$B run --rm --network none busybox true" \
    -n dockerd "$D run --rm --network none busybox true" \
    -n podman "$P run --rm --network none busybox true" >/dev/null 2>&1
hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/cli.json" \
    -n "docker version (berthd)" "$B version" >/dev/null 2>&1
python3 - "$work/run.json" "$work/cli.json" <<'PY'
import json, sys
for f in sys.argv[1:]:
    for r in json.load(open(f))["results"]:
        print(f'  {r["command"]:28s} median {r["median"]*1000:7.1f} ms  mean {r["mean"]*1000:7.1f} ms')
PY

echo "== 100 sequential docker run --rm"
for e in B D P; do
    start=$(date +%s.%N)
    for _ in $(seq 100); do ${!e} run --rm --network none busybox true >/dev/null; done
    printf '  %-8s %6.2f s\n' "$e" "$(echo "$(date +%s.%N) - $start" | bc)"
done

mem_avail() { awk '/MemAvailable/ {print $2}' /proc/meminfo; }
rss_of() { # total VmRSS (KiB) and count of processes named $1
    local total=0 n=0
    # berthd's one standby monitor serves no container yet: left out (a monitor that took
    # its job leads its own session).
    for p in $(pgrep -x "${1:0:15}"); do
        [ "$1" = berth-monitor ] && [ "$(ps -o sid= -p "$p" | tr -d ' ')" != "$p" ] && continue
        total=$((total + $(awk '/VmRSS/ {print $2}' /proc/$p/status 2>/dev/null || echo 0))); n=$((n + 1))
    done
    echo "$total $n"
}
echo "== 50 detached sleep containers (start / host memory / per-container process / ps / rm -f)"
for e in B D P; do
    case $e in B) proc=berth-monitor ;; D) proc=containerd-shim-runc-v2 ;; P) proc=conmon ;; esac
    sync; echo 1 >/proc/sys/vm/drop_caches
    before=$(mem_avail)
    start=$(date +%s.%N)
    for i in $(seq 50); do ${!e} run -d --network none busybox sleep 1000 >/dev/null; done
    t=$(echo "$(date +%s.%N) - $start" | bc)
    sleep 2
    used=$(( (before - $(mem_avail)) / 1024 ))
    read -r rss n < <(rss_of $proc)
    ps_ms=$(hyperfine -N --warmup 3 --runs 20 --export-json "$work/ps.json" "${!e} ps" >/dev/null 2>&1 && python3 -c "import json;print(round(json.load(open('$work/ps.json'))['results'][0]['median']*1000,1))")
    start=$(date +%s.%N)
    ${!e} rm -f $(${!e} ps -q) >/dev/null
    rm_t=$(echo "$(date +%s.%N) - $start" | bc)
    printf '  %-3s start 50: %6.2f s   host memory: %4d MiB   %s: %d procs, %.1f MiB RSS each   ps: %s ms   rm -f 50: %.2f s\n' \
        "$e" "$t" "$used" "$proc" "$n" "$(echo "$rss / ($n + ($n == 0)) / 1024" | bc -l)" "$ps_ms" "$rm_t"
done

# ps with 1000 containers and the lean-client figures: cargo bench -p berthd --bench api
