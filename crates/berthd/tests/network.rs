//! Networking through the real docker CLI against berthd, on the real kernel: bridges,
//! NAT, published ports, user-defined networks with DNS, isolation, and cleanup.
//!
//! Traffic only ever goes to loopback and to network namespaces these tests create: a
//! "remote host" is a namespace joined to the host by a veth pair of its own.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::Daemon;

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

fn ok(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A namespace standing for another machine: `10.<n>.0.2/30` inside, the host at
/// `10.<n>.0.1`, and no other route: it can only answer what comes from the host's
/// address (so reaching it from a container proves the masquerade). Removed on drop.
struct RemoteHost {
    name: String,
    host_if: String,
    pub host_ip: String,
    pub ip: String,
}

impl RemoteHost {
    fn new(tag: &str, n: u8) -> RemoteHost {
        let name = format!("bt-{tag}-{}", std::process::id());
        let host_if = format!("vr{tag}{}", std::process::id() % 10000);
        let r = RemoteHost {
            host_ip: format!("10.{n}.0.1"),
            ip: format!("10.{n}.0.2"),
            name,
            host_if,
        };
        ok(&format!(
            "ip netns add {ns} && ip link add {h} type veth peer name eth0 netns {ns} && \
             ip addr add {hip}/30 dev {h} && ip link set {h} up && \
             ip -n {ns} addr add {ip}/30 dev eth0 && ip -n {ns} link set eth0 up && ip -n {ns} link set lo up",
            ns = r.name,
            h = r.host_if,
            hip = r.host_ip,
            ip = r.ip
        ));
        r
    }

    /// Run a command inside the namespace.
    fn run(&self, cmd: &str) -> std::process::Output {
        sh(&format!("ip netns exec {} {cmd}", self.name))
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        // Any server a test started in there.
        let _ = sh(&format!("ip netns pids {} | xargs -r kill -9", self.name));
        let _ = sh(&format!("ip link del {}", self.host_if));
        let _ = sh(&format!("ip netns del {}", self.name));
    }
}

fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// Retry until the container's server answers (it starts in the background).
fn wait_http(addr: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(addr, path) {
            Ok(s) if s.contains("200") => return s,
            r => assert!(Instant::now() < deadline, "{addr}{path}: {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `wget` of `url` from a new container on the default bridge. (busybox's `wget -T`
/// crashes, so `timeout` bounds it.)
fn wget_from_container(d: &Daemon, url: &str) -> std::process::Output {
    d.docker_output(&[
        "run", "--rm", "busybox", "timeout", "5", "wget", "-q", "-O", "-", url,
    ])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A DNS server for one test: answers every query on `argv[1]:53` with one A record
/// (10.9.8.7) for the question's name.
const FAKE_DNS: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    q, peer = s.recvfrom(512)
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    question = q[12:end + 5]
    header = q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([10, 9, 8, 7])
    if q[end + 1:end + 3] == b"\x00\x01":
        s.sendto(header + question + answer, peer)
    else:
        s.sendto(header[:7] + b"\x00" + header[8:] + question, peer)
"#;

const UDP_ECHO: &str = "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 9000))\nwhile True:\n    d, a = s.recvfrom(100)\n    s.sendto(b'echo:' + d, a)\n";

const SERVE: &str =
    "mkdir -p /w && echo served-by-$(hostname) > /w/index.html && exec httpd -f -p 8080 -h /w";

/// The veths on this daemon's bridges, and its namespace files.
fn leftovers(d: &Daemon) -> (usize, usize) {
    let bridge_of = |b: &str| {
        ok(&format!("ip -o link show master {b} 2>/dev/null | wc -l"))
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
    };
    let mut veths = 0;
    for rec in std::fs::read_dir(d.data_root.join("network"))
        .unwrap()
        .flatten()
    {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(rec.path()).unwrap()).unwrap_or_default();
        if let Some(b) = v["bridge"].as_str().filter(|b| !b.is_empty()) {
            veths += bridge_of(b);
        }
    }
    let netns = std::fs::read_dir(d.exec_root.join("netns"))
        .map(|r| r.count())
        .unwrap_or(0);
    (veths, netns)
}

/// Wait for the kernel to finish removing the interfaces of ended containers (it does so in
/// the background once their namespace is gone), then check what is left.
fn settles(d: &Daemon, want: (usize, usize)) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while leftovers(d) != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        leftovers(d),
        want,
        "(veths on the daemon's bridges, namespace files)"
    );
}

fn table_of(d: &Daemon) -> String {
    let dj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.root.path().join("daemon.json")).unwrap()).unwrap();
    format!("berth_{}", dj["bridge"].as_str().unwrap())
}

#[test]
fn published_ports_reach_the_container_from_another_host_and_from_localhost() {
    let d = Daemon::start();
    let remote = RemoteHost::new("pp", 251);
    let port = free_port();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--hostname",
        "web1",
        "-p",
        &format!("{port}:8080"),
        "busybox",
        "sh",
        "-c",
        SERVE,
    ]);
    // From the host itself, through localhost.
    let body = wait_http(&format!("127.0.0.1:{port}"), "/index.html");
    assert!(body.contains("served-by-web1"), "{body}");
    // From another machine, to the host's address.
    let o = remote.run(&format!(
        "timeout 5 busybox wget -q -O - http://{}:{port}/index.html",
        remote.host_ip
    ));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("served-by-web1"),
        "remote: {} {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // `docker port`, `ps` and inspect show the mapping and the address.
    assert_eq!(
        d.docker(&["port", "web"]).trim(),
        format!("8080/tcp -> 0.0.0.0:{port}")
    );
    assert!(d
        .docker(&["ps"])
        .contains(&format!("0.0.0.0:{port}->8080/tcp")));
    let ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
    let ip = ip.trim();
    assert!(ip.starts_with("10."), "{ip}");
    // The container's own view: its address, its route out, its /etc/hosts.
    let inside = d.docker(&[
        "exec",
        "web",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ip route; cat /etc/hosts",
    ]);
    assert!(inside.contains(&format!("inet {ip}/24")), "{inside}");
    assert!(inside.contains("default via"), "{inside}");
    assert!(inside.contains(&format!("{ip}\tweb1")), "{inside}");
    // UDP is published too: a UDP echo server (the host's python, mounted read-only).
    let uport = free_port();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "udp",
        "--mac-address",
        "02:42:0a:0b:0c:0d",
        "-p",
        &format!("{uport}:9000/udp"),
        "-v",
        "/usr:/usr:ro",
        "-v",
        "/lib:/lib:ro",
        "-v",
        "/lib64:/lib64:ro",
        "busybox",
        "/usr/bin/python3",
        "-c",
        UDP_ECHO,
    ]);
    let mac = d.docker(&["exec", "udp", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac.trim(), "02:42:0a:0b:0c:0d");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64];
    loop {
        sock.send_to(b"over-udp", ("127.0.0.1", uport)).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            assert_eq!(&buf[..n], b"echo:over-udp");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no UDP answer through the published port"
        );
    }
    d.docker(&["rm", "-f", "udp"]);
    // The port is held while the container runs...
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_err());
    // ... and released, with its rule, when it stops.
    d.docker(&["stop", "-t", "1", "web"]);
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
    let rules = ok(&format!("nft list table ip {}", table_of(&d)));
    assert!(!rules.contains(&format!("dport {port}")), "{rules}");
    settles(&d, (0, 0));
    assert_eq!(
        d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"])
            .trim(),
        ""
    );
}

#[test]
fn containers_reach_other_hosts_through_nat_and_publish_all_exposed_ports() {
    let d = Daemon::start();
    let remote = RemoteHost::new("nat", 252);
    // A web server on the remote host.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), "from-remote\n").unwrap();
    let mut srv = Command::new("ip")
        .args([
            "netns",
            "exec",
            &remote.name,
            "busybox",
            "httpd",
            "-f",
            "-p",
            "7000",
            "-h",
        ])
        .arg(dir.path())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = wget_from_container(&d, &format!("http://{}:7000/f", remote.ip));
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("from-remote"),
        "{out:?}"
    );

    // -P publishes every exposed port on a free host port.
    let id = d.docker(&[
        "run", "-d", "-P", "--expose", "8080", "busybox", "sh", "-c", SERVE,
    ]);
    let id = id.trim();
    let mapping = d.docker(&["port", id, "8080/tcp"]);
    let port = mapping.trim().rsplit(':').next().unwrap().to_string();
    assert!(port.parse::<u16>().unwrap() > 1024, "{mapping}");
    wait_http(&format!("127.0.0.1:{port}"), "/index.html");
    // A container reaches a published port of another container through the host
    // (hairpin through the bridge).
    let gw = d.docker(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", id]);
    let via_host = wget_from_container(&d, &format!("http://{}:{port}/index.html", gw.trim()));
    assert!(
        String::from_utf8_lossy(&via_host.stdout).contains("served-by-"),
        "{via_host:?}"
    );
    d.docker(&["rm", "-f", id]);
    settles(&d, (0, 0));
}

#[test]
fn user_networks_resolve_names_and_aliases_and_are_isolated() {
    let d = Daemon::start();
    let n = std::process::id() % 200;
    let sub_a = format!("10.{}.1.0/24", 20 + n % 30);
    let sub_b = format!("10.{}.2.0/24", 20 + n % 30);
    d.docker(&[
        "network", "create", "--subnet", &sub_a, "--label", "team=a", "neta",
    ]);
    d.docker(&["network", "create", "--subnet", &sub_b, "netb"]);
    let ls = d.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for want in [
        "bridge bridge",
        "host host",
        "none null",
        "neta bridge",
        "netb bridge",
    ] {
        assert!(ls.contains(want), "{ls}");
    }
    let db = d.docker(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "neta",
        "--network-alias",
        "database",
        "busybox",
        "sleep",
        "300",
    ]);
    let db_id = db.trim();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "netb",
        "busybox",
        "sleep",
        "300",
    ]);
    let db_ip = d.docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.neta.IPAddress}}",
        "db",
    ]);
    let db_ip = db_ip.trim().to_string();
    let other_ip = d.docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.netb.IPAddress}}",
        "other",
    ]);
    let other_ip = other_ip.trim().to_string();
    assert!(
        db_ip.starts_with(&sub_a[..sub_a.len() - 4]),
        "{db_ip} in {sub_a}"
    );

    // By name, by alias, by short ID; a name on another network does not resolve.
    let script = format!(
        "cat /etc/resolv.conf; for n in db database {short} other; do echo \"== $n\"; nslookup $n 2>&1; done; \
         ping -c1 -W2 db >/dev/null && echo PING-DB-OK; ping -c1 -W2 {other_ip} >/dev/null && echo PING-OTHER-OK; true",
        short = &db_id[..12]
    );
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "neta",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.contains("nameserver 127.0.0.11"), "{out}");
    let section = |name: &str| -> String {
        out.split(&format!("== {name}\n"))
            .nth(1)
            .map(|s| s.split("== ").next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    for name in ["db", "database", &db_id[..12]] {
        assert!(
            section(name).contains(&format!("Address: {db_ip}")),
            "{name}: {out}"
        );
    }
    assert!(!section("other").contains(&other_ip), "{out}");
    assert!(out.contains("PING-DB-OK"), "{out}");
    assert!(
        !out.contains("PING-OTHER-OK"),
        "networks must be isolated: {out}"
    );

    // Other names go to the container's --dns servers, asked from berthd's namespace:
    // here a minimal DNS server on another "host" that answers every A query with 10.9.8.7.
    let remote = RemoteHost::new("dns", 254);
    let mut srv = Command::new("ip")
        .args([
            "netns",
            "exec",
            &remote.name,
            "python3",
            "-c",
            FAKE_DNS,
            &remote.ip,
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "neta",
        "--dns",
        &remote.ip,
        "busybox",
        "nslookup",
        "outside.example",
    ]);
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(
        out.contains("10.9.8.7"),
        "forwarded through 127.0.0.11: {out}"
    );

    // Inspect lists the attached container; removal is refused while it is attached.
    let (st, v) = d.json("GET", "/networks/neta", None);
    assert_eq!(st, 200);
    assert_eq!(v["Containers"][db_id]["Name"], "db");
    assert_eq!(v["IPAM"]["Config"][0]["Subnet"], sub_a.as_str());
    assert_eq!(v["Labels"]["team"], "a");
    let o = d.docker_output(&["network", "rm", "neta"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("active endpoints"),
        "{o:?}"
    );
    let o = d.docker_output(&["network", "rm", "bridge"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pre-defined network"),
        "{o:?}"
    );

    d.docker(&["rm", "-f", "db", "other"]);
    let bridge = v["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_string();
    d.docker(&["network", "rm", "neta"]);
    assert!(
        !ok("ip -o link show").contains(&format!(" {bridge}:")),
        "bridge {bridge} left"
    );
    let pruned = d.docker(&["network", "prune", "-f"]);
    assert!(pruned.contains("netb"), "{pruned}");
    assert_eq!(d.docker(&["network", "ls", "-q"]).lines().count(), 3);
    settles(&d, (0, 0));
}

#[test]
fn network_modes_host_none_and_container() {
    let d = Daemon::start();
    let none = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert_eq!(none.lines().count(), 1, "only loopback: {none}");
    // The host's own interfaces (its loopback aside) are visible with --network host; a
    // count would race with the other tests' veths.
    let host_ifs = ok("ip -o -4 addr show scope global | awk '{print $2\":\"$4}'");
    assert!(!host_ifs.trim().is_empty());
    let host = d.docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show scope global | awk '{print $2\":\"$4}'",
    ]);
    for l in host_ifs
        .lines()
        .filter(|l| !l.starts_with("vr") && !l.starts_with("bt") && !l.starts_with("br-"))
    {
        assert!(host.contains(l), "{l} missing from --network host: {host}");
    }
    // container:<name> shares the stack: the same address, and its loopback.
    d.docker(&["run", "-d", "--name", "srv", "busybox", "sh", "-c", SERVE]);
    let ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv"]);
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "container:srv",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; sleep 0.3; timeout 5 wget -q -O - http://127.0.0.1:8080/index.html",
    ]);
    assert!(out.contains(&format!("inet {}/", ip.trim())), "{out}");
    assert!(out.contains("served-by-"), "{out}");
    d.docker(&["rm", "-f", "srv"]);
    settles(&d, (0, 0));
}

#[test]
fn bad_network_input_gets_clear_errors() {
    let d = Daemon::start();
    let err = |args: &[&str]| -> String {
        let o = d.docker_output(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // Port conflicts name the port, for berth's own containers and for other programs.
    let port = free_port();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "ca",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "sleep",
        "300",
    ]);
    let e = err(&[
        "run",
        "-d",
        "--name",
        "cb",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(
        e.contains(&format!("0.0.0.0:{port}")) && e.contains("already allocated"),
        "{e}"
    );
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p2 = held.local_addr().unwrap().port();
    let e = err(&[
        "run",
        "--rm",
        "-p",
        &format!("127.0.0.1:{p2}:80"),
        "busybox",
        "true",
    ]);
    assert!(e.contains(&format!("127.0.0.1:{p2}")), "{e}");
    // The failed starts left nothing behind: only `ca` holds a veth and a namespace.
    settles(&d, (1, 1));
    d.docker(&["rm", "-f", "ca", "cb"]);

    for (args, want) in [
        (
            vec!["network", "create", "--subnet", "10.1.2.0/33", "x1"],
            "invalid subnet",
        ),
        (
            vec!["network", "create", "--subnet", "10.1.2.3/24", "x2"],
            "host bits",
        ),
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.1.2.0/24",
                "--gateway",
                "10.9.9.1",
                "x3",
            ],
            "gateway",
        ),
        (
            vec!["network", "create", "--subnet", "fd00::/64", "x4"],
            "IPv4",
        ),
        (vec!["network", "create", "-d", "overlay", "x5"], "overlay"),
        (
            vec!["network", "create", "bad name"],
            "invalid network name",
        ),
        // berth never takes over an interface it did not make.
        (
            vec![
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.name=lo",
                "x6",
            ],
            "already exists",
        ),
        (
            vec![
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.name=a b",
                "x7",
            ],
            "invalid bridge name",
        ),
    ] {
        let e = err(&args);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    let n = std::process::id() % 200;
    let sub = format!("10.{}.3.0/24", 20 + n % 30);
    d.docker(&["network", "create", "--subnet", &sub, "ok1"]);
    let e = err(&["network", "create", "--subnet", &sub, "ok2"]);
    assert!(e.contains("overlaps"), "{e}");
    let e = err(&["network", "create", "ok1"]);
    assert!(e.contains("already exists"), "{e}");
    let e = err(&["run", "--rm", "--network", "nope", "busybox", "true"]);
    assert!(e.contains("network nope not found"), "{e}");
    let e = err(&[
        "run",
        "--rm",
        "--ip",
        "10.200.0.5",
        "--network",
        "ok1",
        "busybox",
        "true",
    ]);
    assert!(e.contains("does not belong"), "{e}");
    let e = err(&["run", "--rm", "-p", "70000:80", "busybox", "true"]);
    assert!(e.to_lowercase().contains("port"), "{e}");
    // --ip in the subnet is honoured.
    let ip = format!("10.{}.3.77", 20 + n % 30);
    let out = d.docker(&[
        "run",
        "--rm",
        "--ip",
        &ip,
        "--network",
        "ok1",
        "busybox",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(out.contains(&ip), "{out}");
    d.docker(&["network", "rm", "ok1"]);

    // --ip-range: automatic addresses come from the range, inside the subnet.
    let rsub = format!("10.{}.6.0/24", 20 + n % 30);
    let range = format!("10.{}.6.128/25", 20 + n % 30);
    d.docker(&[
        "network",
        "create",
        "--subnet",
        &rsub,
        "--ip-range",
        &range,
        "ranged",
    ]);
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "ranged",
        "busybox",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(
        out.contains(&format!("10.{}.6.128/24", 20 + n % 30)),
        "{out}"
    );
    d.docker(&["network", "rm", "ranged"]);
    let e = err(&[
        "network",
        "create",
        "--subnet",
        &rsub,
        "--ip-range",
        "10.99.0.0/25",
        "badrange",
    ]);
    assert!(e.contains("range"), "{e}");
    // The same through the API, past the CLI's own checks: berthd refuses it too.
    let (st, v) = d.json(
        "POST",
        "/networks/create",
        Some(&format!(
            r#"{{"Name":"badrange","IPAM":{{"Config":[{{"Subnet":"{rsub}","IPRange":"10.99.0.0/25"}}]}}}}"#
        )),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("not inside the subnet"),
        "{v}"
    );
    let (st, v) = d.json(
        "POST",
        "/networks/create",
        Some(r#"{"Name":"v6","EnableIPv6":true}"#),
    );
    assert_eq!(st, 400, "{v}");

    // A host port range: the first free port of it.
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let p = held.local_addr().unwrap().port();
    if p < 65000 {
        let id = d.docker(&[
            "run",
            "-d",
            "-p",
            &format!("{p}-{}:80", p + 3),
            "busybox",
            "sleep",
            "300",
        ]);
        let got = d.docker(&["port", id.trim(), "80"]);
        let got: u16 = got.trim().rsplit(':').next().unwrap().parse().unwrap();
        assert!(got > p && got <= p + 3, "{got} not in ({p}, {}]", p + 3);
        d.docker(&["rm", "-f", id.trim()]);
    }
    // --dns-search and --dns-option reach resolv.conf next to the embedded server.
    d.docker(&["network", "create", "--subnet", &rsub, "searchnet"]);
    let conf = d.docker(&[
        "run",
        "--rm",
        "--network",
        "searchnet",
        "--dns-search",
        "corp.example",
        "--dns-option",
        "attempts:2",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(conf.contains("nameserver 127.0.0.11"), "{conf}");
    assert!(conf.contains("search corp.example"), "{conf}");
    assert!(conf.contains("attempts:2"), "{conf}");
    d.docker(&["network", "rm", "searchnet"]);
    settles(&d, (0, 0));
}

#[test]
fn nothing_leaks_after_many_cycles_or_a_daemon_kill() {
    let mut d = Daemon::start();
    let cycles: usize = std::env::var("BERTH_NET_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    // Start/stop cycles through the API (the CLI would only add its own start-up time).
    let port = free_port();
    let body = format!(
        r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{"PortBindings":{{"80/tcp":[{{"HostPort":"{port}"}}]}}}}}}"#
    );
    let (st, v) = d.json("POST", "/containers/create?name=cycler", Some(&body));
    assert_eq!(st, 201, "{v}");
    for i in 0..cycles {
        let (st, _, b) = d.http("POST", "/containers/cycler/start", None);
        assert_eq!(st, 204, "cycle {i}: {}", String::from_utf8_lossy(&b));
        let (st, v) = d.json("POST", "/containers/cycler/wait", None);
        assert_eq!((st, v["StatusCode"].as_i64()), (200, Some(0)), "cycle {i}");
    }
    // Exit handling (release) runs right after the wait answers: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while leftovers(&d) != (0, 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(leftovers(&d), (0, 0), "after {cycles} cycles");
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());

    // A container that ends while berthd is down: its veth, namespace and port are
    // released when berthd comes back; one still running keeps its own.
    let p1 = free_port();
    let p2 = free_port();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "short",
        "-p",
        &format!("{p1}:80"),
        "busybox",
        "sleep",
        "2",
    ]);
    d.docker(&[
        "run",
        "-d",
        "--name",
        "long",
        "-p",
        &format!("{p2}:8080"),
        "busybox",
        "sh",
        "-c",
        SERVE,
    ]);
    wait_http(&format!("127.0.0.1:{p2}"), "/index.html");
    d.kill9();
    std::thread::sleep(Duration::from_secs(3));
    d.spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while leftovers(&d) != (1, 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        leftovers(&d),
        (1, 1),
        "only `long` holds a veth and a namespace"
    );
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", p1)).is_ok(),
        "short's port is free"
    );
    assert!(
        std::net::TcpListener::bind(("0.0.0.0", p2)).is_err(),
        "long's port is held again"
    );
    wait_http(&format!("127.0.0.1:{p2}"), "/index.html");
    let rules = ok(&format!("nft list table ip {}", table_of(&d)));
    assert!(
        !rules.contains(&format!("dport {p1}")) && rules.contains(&format!("dport {p2}")),
        "{rules}"
    );
    d.docker(&["rm", "-f", "long", "short", "cycler"]);
    settles(&d, (0, 0));
}

#[test]
fn links_connect_disconnect_and_internal_networks() {
    let d = Daemon::start();
    // Legacy links: Docker's variables and /etc/hosts line.
    d.docker(&[
        "run",
        "-d",
        "--name",
        "db",
        "--hostname",
        "dbhost",
        "-e",
        "PGUSER=me",
        "--expose",
        "5432",
        "busybox",
        "sleep",
        "300",
    ]);
    let ip = d.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "db"]);
    let ip = ip.trim();
    let out = d.docker(&[
        "run",
        "--name",
        "web",
        "--link",
        "db:base",
        "--add-host",
        "gw:host-gateway",
        "busybox",
        "sh",
        "-c",
        "env | sort; cat /etc/hosts",
    ]);
    for want in [
        format!("BASE_PORT=tcp://{ip}:5432"),
        format!("BASE_PORT_5432_TCP=tcp://{ip}:5432"),
        format!("BASE_PORT_5432_TCP_ADDR={ip}"),
        "BASE_PORT_5432_TCP_PORT=5432".to_string(),
        "BASE_PORT_5432_TCP_PROTO=tcp".to_string(),
        "BASE_NAME=/web/base".to_string(),
        "BASE_ENV_PGUSER=me".to_string(),
        format!("{ip}\tbase dbhost db"),
    ] {
        assert!(out.contains(&want), "{want} missing:\n{out}");
    }
    assert!(!out.contains("BASE_ENV_PATH"), "{out}");
    let gw = d.docker(&["inspect", "-f", "{{.NetworkSettings.Gateway}}", "db"]);
    assert!(
        out.contains(&format!("{}\tgw", gw.trim())),
        "host-gateway: {out}"
    );
    let links = d.docker(&["inspect", "-f", "{{json .HostConfig.Links}}", "web"]);
    assert_eq!(links.trim(), r#"["/db:/web/base"]"#);
    d.docker(&["rm", "web"]);
    let o = d.docker_output(&["run", "--rm", "--link", "nosuch:x", "busybox", "true"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nosuch"),
        "{o:?}"
    );

    // connect and disconnect a running container.
    let n = std::process::id() % 200;
    let sub = format!("10.{}.4.0/24", 20 + n % 30);
    d.docker(&["network", "create", "--subnet", &sub, "n1"]);
    d.docker(&["network", "connect", "--alias", "pg", "n1", "db"]);
    let eth1 = d.docker(&["exec", "db", "ip", "-o", "-4", "addr", "show", "eth1"]);
    let n1_ip = d.docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.n1.IPAddress}}",
        "db",
    ]);
    assert!(
        eth1.contains(n1_ip.trim()) && !n1_ip.trim().is_empty(),
        "{eth1} / {n1_ip}"
    );
    let found = d.docker(&[
        "run",
        "--rm",
        "--network",
        "n1",
        "busybox",
        "nslookup",
        "pg",
    ]);
    assert!(found.contains(n1_ip.trim()), "{found}");
    let o = d.docker_output(&["network", "connect", "n1", "db"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{o:?}"
    );
    d.docker(&["network", "disconnect", "n1", "db"]);
    let o = d.docker_output(&["exec", "db", "ip", "link", "show", "eth1"]);
    assert!(!o.status.success(), "eth1 must be gone");
    assert_eq!(
        d.docker(&["inspect", "-f", "{{len .NetworkSettings.Networks}}", "db"])
            .trim(),
        "1"
    );
    // Connecting a stopped container takes effect at its start.
    d.docker(&[
        "create", "--name", "later", "busybox", "ip", "-o", "-4", "addr",
    ]);
    d.docker(&["network", "connect", "n1", "later"]);
    d.docker(&["start", "later"]);
    d.docker(&["wait", "later"]);
    let logs = d.docker(&["logs", "later"]);
    assert!(logs.contains("eth0") && logs.contains("eth1"), "{logs}");
    assert!(logs.contains(&sub[..sub.len() - 4]), "{logs}");

    // An internal network reaches nothing outside it; the default bridge does.
    let remote = RemoteHost::new("int", 253);
    let isub = format!("10.{}.5.0/24", 20 + n % 30);
    d.docker(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        &isub,
        "inside",
    ]);
    let probe = format!(
        "ping -c1 -W2 {} >/dev/null && echo REACHED || echo BLOCKED",
        remote.ip
    );
    let out = d.docker(&["run", "--rm", "busybox", "sh", "-c", &probe]);
    assert!(out.contains("REACHED"), "default bridge: {out}");
    let out = d.docker(&[
        "run",
        "--rm",
        "--network",
        "inside",
        "busybox",
        "sh",
        "-c",
        &probe,
    ]);
    assert!(out.contains("BLOCKED"), "internal network: {out}");
    d.docker(&["rm", "-f", "db", "later"]);
    d.docker(&["network", "rm", "n1", "inside"]);
    settles(&d, (0, 0));
}
