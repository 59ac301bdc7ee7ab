#!/usr/bin/env bash
# Benchmark: what networking costs, berthd side by side with Debian's dockerd (docker.io,
# its default bridge, iptables and userland proxy), in one sitting, through the same
# docker CLI.
#   - start: docker run --rm busybox true on the default bridge vs --network none
#     (median of N, default 30), and berthd's own measure of the network set-up per start
#   - iperf3 TCP throughput container -> host (the bridge address)
#   - iperf3 through a published port: from another "host" (a network namespace joined by a
#     veth pair: DNAT for both engines) and from the host through localhost (berth: DNAT
#     with route_localnet; dockerd: its userland proxy, docker-proxy)
# Timings only; nothing here passes or fails. Needs root; installs docker.io, iperf3,
# hyperfine. Traffic stays on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
secs=${IPERF_SECONDS:-5}
rounds=${IPERF_ROUNDS:-3}
for p in docker.io iperf3 hyperfine nftables; do
    dpkg -s "$p" >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null
done
cargo build --release --workspace >/dev/null
DOCKER=/usr/local/bin/docker
work=$(mktemp -d /var/tmp/berth-net-bench.XXXXXX)
run=/run/bnb-$$
ns=bnb-remote-$$
mkdir -p "$run"
berthd_pid= dockerd_pid=
# dockerd writes its own iptables rules (and a FORWARD policy of DROP) and leaves them
# behind: the whole ruleset is put back as it was.
nft list ruleset >"$work/ruleset.before"
cleanup() {
    set +e
    for h in "unix://$run/berth.sock" "unix://$run/docker.sock"; do
        ids=$($DOCKER -H "$h" ps -aq 2>/dev/null) && [ -n "$ids" ] && $DOCKER -H "$h" rm -f $ids >/dev/null 2>&1
    done
    [ -n "$berthd_pid" ] && kill "$berthd_pid" && wait "$berthd_pid"
    [ -n "$dockerd_pid" ] && kill "$dockerd_pid" && wait "$dockerd_pid"
    target/release/berthd --data-root "$work/berth" --exec-root "$run/berth" \
        --config-file "$work/berthd.json" --teardown-networks 2>/dev/null
    ip link del docker0 2>/dev/null
    nft flush ruleset && nft -f "$work/ruleset.before"
    ip netns pids "$ns" 2>/dev/null | xargs -r kill
    ip link del vbnb$$ 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    pkill -f "iperf3 -s -p 5299" 2>/dev/null
    umount -R "$work"/docker/* 2>/dev/null
    rm -rf "$work" "$run"
}
trap cleanup EXIT

scripts/make-busybox-rootfs.sh "$work/rootfs" >/dev/null 2>&1
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

echo '{"bridge": "bnb0", "bip": "10.199.0.1/24"}' >"$work/berthd.json"
BERTHD_LOG=warn,berth_engine=debug target/release/berthd -H "unix://$run/berth.sock" \
    --data-root "$work/berth" --exec-root "$run/berth" --config-file "$work/berthd.json" \
    2>"$work/berthd.log" &
berthd_pid=$!
dockerd -H "unix://$run/docker.sock" --data-root "$work/docker" --exec-root "$run/docker" \
    --pidfile "$run/docker.pid" --bip 10.198.0.1/24 \
    --containerd-namespace berth-bench --containerd-plugins-namespace berth-bench-plugins \
    >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for s in berth docker; do
    for _ in $(seq 200); do [ -S "$run/$s.sock" ] && $DOCKER -H "unix://$run/$s.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
    $DOCKER -H "unix://$run/$s.sock" import -c 'CMD ["sh"]' "$work/busybox.tar" busybox:latest >/dev/null
done
# dockerd turned the FORWARD policy to DROP: berth's containers need it open (berth's own
# table accepts, but a drop in any table wins).
iptables -P FORWARD ACCEPT
B="$DOCKER -H unix://$run/berth.sock"
D="$DOCKER -H unix://$run/docker.sock"

echo "== start: docker run --rm busybox true, bridge vs --network none (median of $runs)"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/start.json" \
    -n "berthd none" "$B run --rm --network none busybox true" \
    -n "berthd bridge" "$B run --rm busybox true" \
    -n "dockerd none" "$D run --rm --network none busybox true" \
    -n "dockerd bridge" "$D run --rm busybox true" >/dev/null 2>&1
python3 - "$work/start.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
for e in ("berthd", "dockerd"):
    print(f'  {e:8s} none {r[e+" none"]:7.1f} ms   bridge {r[e+" bridge"]:7.1f} ms   networking adds {r[e+" bridge"]-r[e+" none"]:6.1f} ms')
PY
python3 - "$work/berthd.log" <<'PY'
import re, statistics, sys
log = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1]).read())
v = [int(x) / 1000 for x in re.findall(r"network_us=(\d+)", log)]
v = [x for x in v if x > 0.05]
if v:
    print(f"  berthd's own measure of a bridge start's network set-up: median {statistics.median(v):.2f} ms (n={len(v)})")
PY

vols="-v /usr:/usr:ro -v /lib:/lib:ro -v /lib64:/lib64:ro"
# Gbit/s received, from iperf3's JSON (or why it failed).
iperf_bps() {
    python3 -c "
import json, sys
raw = sys.stdin.read()
try:
    print(round(json.loads(raw)['end']['sum_received']['bits_per_second'] / 1e9, 2))
except Exception:
    print('failed: ' + raw.strip()[-200:].replace(chr(10), ' '))
"
}

median() { python3 -c "
import statistics, sys
v = [float(x) for x in sys.argv[1:] if x.replace('.', '', 1).isdigit()]
print(round(statistics.median(v), 2) if v else 'failed')
" "$@"; }

echo "== iperf3: container -> host (${secs} s, Gbit/s, median of $rounds rounds, engines alternating)"
iperf3 -s -p 5299 -D
sleep 0.3
declare -A got
for _ in $(seq "$rounds"); do
    for e in B D; do
        gw=$([ $e = B ] && echo 10.199.0.1 || echo 10.198.0.1)
        got[$e]+=" $(${!e} run --rm $vols busybox /usr/bin/iperf3 -c "$gw" -p 5299 -t "$secs" -J 2>&1 | iperf_bps)"
    done
done
printf '  berthd  %6s   dockerd %6s   (rounds: berthd%s; dockerd%s)\n' "$(median ${got[B]})" "$(median ${got[D]})" "${got[B]}" "${got[D]}"
pkill -f "iperf3 -s -p 5299" || true

# Another "host": a namespace with a veth to this one.
ip netns add "$ns"
ip link add vbnb$$ type veth peer name eth0 netns "$ns"
ip addr add 10.197.0.1/30 dev vbnb$$ && ip link set vbnb$$ up
ip -n "$ns" addr add 10.197.0.2/30 dev eth0 && ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up

echo "== iperf3 through a published port (${secs} s, Gbit/s, median of $rounds rounds)"
$B run -d --name iperf-b -p 15201:5201 $vols busybox /usr/bin/iperf3 -s >/dev/null
$D run -d --name iperf-d -p 15202:5201 $vols busybox /usr/bin/iperf3 -s >/dev/null
sleep 1
declare -A remote loc
for _ in $(seq "$rounds"); do
    for e in B D; do
        port=$([ $e = B ] && echo 15201 || echo 15202)
        remote[$e]+=" $(ip netns exec "$ns" iperf3 -c 10.197.0.1 -p "$port" -t "$secs" -J 2>&1 | iperf_bps)"
        loc[$e]+=" $(iperf3 -c 127.0.0.1 -p "$port" -t "$secs" -J 2>&1 | iperf_bps)"
    done
done
for e in B D; do
    printf '  %-8s from another host (DNAT): %6s   from localhost: %6s   (rounds:%s /%s)\n' \
        "$([ $e = B ] && echo berthd || echo dockerd)" "$(median ${remote[$e]})" "$(median ${loc[$e]})" "${remote[$e]}" "${loc[$e]}"
done
