//! berthd through a lean client: the Engine API requests `docker run --rm` makes, from a
//! small Rust client over the Unix socket, so the figures are the daemon's and not the
//! docker CLI's start-up (~17 ms here). Also: 50 detached starts, `ps` with 50 running,
//! the memory they cost, and `rm -f` of all 50.
//!
//! `cargo build --release --workspace && cargo bench -p berthd --bench api` (as root). It
//! starts its own berthd with a temporary data root, like the tests. Timings only: nothing
//! here passes or fails on a figure.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

const API: &str = "/v1.47";

/// Send one request; returns the stream positioned after the request.
fn send(sock: &Path, method: &str, path: &str, body: &str, extra: &str) -> UnixStream {
    let mut s = UnixStream::connect(sock).expect("connecting to berthd");
    let req = format!(
        "{method} {API}{path} HTTP/1.1\r\nHost: api\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    s
}

/// Read a whole response with Content-Length (or to EOF); returns (status, body).
fn response(s: UnixStream) -> (u16, Vec<u8>) {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut len: Option<usize> = None;
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    (status, body)
}

fn call(sock: &Path, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
    response(send(sock, method, path, body, "Connection: close\r\n"))
}

fn create(sock: &Path, body: &str) -> String {
    let (st, b) = call(sock, "POST", "/containers/create", body);
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    v["Id"].as_str().unwrap().to_string()
}

/// What the docker CLI does for `docker run --rm --network none busybox true`:
/// create, attach (hijacked), wait for removal, start, read to EOF, read the exit code.
fn run_rm(sock: &Path) -> [f64; 4] {
    run_rm_on(sock, "none")
}

/// The same on network `net`.
fn run_rm_on(sock: &Path, net: &str) -> [f64; 4] {
    let t0 = Instant::now();
    let id = create(
        sock,
        &format!(
            r#"{{"Image":"busybox","Cmd":["true"],"AttachStdout":true,"AttachStderr":true,"HostConfig":{{"AutoRemove":true,"NetworkMode":"{net}"}}}}"#
        ),
    );
    let mut attach = send(
        sock,
        "POST",
        &format!("/containers/{id}/attach?stream=1&stdout=1&stderr=1"),
        "",
        "Connection: Upgrade\r\nUpgrade: tcp\r\n",
    );
    let mut head = [0u8; 512];
    let n = attach.read(&mut head).unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 101"),
        "attach was not upgraded"
    );
    let t1 = Instant::now();
    let wait = send(
        sock,
        "POST",
        &format!("/containers/{id}/wait?condition=removed"),
        "",
        "Connection: close\r\n",
    );
    let (st, b) = call(sock, "POST", &format!("/containers/{id}/start"), "");
    assert_eq!(st, 204, "{}", String::from_utf8_lossy(&b));
    let t2 = Instant::now();
    let mut rest = Vec::new();
    let _ = attach.read_to_end(&mut rest);
    let t3 = Instant::now();
    let (st, b) = response(wait);
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(v["StatusCode"], 0);
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
    [ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, Instant::now())]
}

fn stats(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = ms[ms.len() / 2];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let p90 = ms[ms.len() * 9 / 10];
    println!(
        "{name:42} median {median:7.2} ms  mean {mean:7.2} ms  p90 {p90:7.2} ms  min {:7.2} ms  (n={})",
        ms[0],
        ms.len()
    );
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sum of a field of /proc/<pid>/status (or smaps_rollup) over live processes named
/// `comm` (berthd's standby monitor left out), and how many there are.
fn proc_kib(comm: &str, file: &str, field: &str) -> (usize, u64) {
    let mut n = 0;
    let mut total = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        if !std::fs::read_to_string(p.join("comm")).is_ok_and(|c| c.trim() == comm) {
            continue;
        }
        // berthd's one standby monitor serves no container yet; a monitor that took its
        // job leads its own session.
        let pid = e.file_name().to_string_lossy().into_owned();
        let leads_session = std::fs::read_to_string(p.join("stat")).is_ok_and(|st| {
            st.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(3).map(|s| s == pid))
                .unwrap_or(false)
        });
        if !leads_session {
            continue;
        }
        // Zombies (exited, not yet reaped by their parent) have no memory: not counted.
        let kib = std::fs::read_to_string(p.join(file)).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        });
        if let Some(kib) = kib {
            n += 1;
            total += kib;
        }
    }
    (n, total)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo's bench discovery
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    if std::env::var("BERTHD_LOG").is_err() {
        std::env::set_var("BERTHD_LOG", "warn");
    }
    let d = support::Daemon::start();
    let sock = d.socket.clone();

    for _ in 0..10 {
        run_rm(&sock);
    }
    let mut ms = Vec::with_capacity(runs);
    let mut phases: [Vec<f64>; 4] = Default::default();
    for _ in 0..runs {
        let t = Instant::now();
        let p = run_rm(&sock);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        for (v, x) in phases.iter_mut().zip(p) {
            v.push(x);
        }
    }
    stats("run --rm (create/attach/wait/start/remove)", ms);
    let names = [
        "  create + attach",
        "  wait sent + start",
        "  output to end of stream",
        "  exit to removed",
    ];
    for (name, v) in names.iter().zip(phases) {
        stats(name, v);
    }

    // What a network adds: the same runs on the default bridge, interleaved with runs on
    // none so that both see the same machine.
    let (mut none, mut bridge) = (Vec::new(), Vec::new());
    for _ in 0..runs / 2 {
        for (net, v) in [("none", &mut none), ("bridge", &mut bridge)] {
            let t = Instant::now();
            run_rm_on(&sock, net);
            v.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    stats("run --rm --network none (interleaved)", none);
    stats("run --rm on the default bridge", bridge);

    let t = Instant::now();
    for _ in 0..100 {
        run_rm(&sock);
    }
    println!(
        "{:42} {:7.2} s",
        "100 sequential run --rm",
        t.elapsed().as_secs_f64()
    );

    // 50 detached sleepers.
    let before = mem_available_kib();
    let t = Instant::now();
    let mut ids = Vec::new();
    for i in 0..50 {
        let id = create(
            &sock,
            &format!(
                r#"{{"Image":"busybox","Cmd":["sleep","1000"],"HostConfig":{{"NetworkMode":"none"}},"Labels":{{"bench":"{i}"}}}}"#
            ),
        );
        let (st, _) = call(&sock, "POST", &format!("/containers/{id}/start"), "");
        assert_eq!(st, 204);
        ids.push(id);
    }
    println!(
        "{:42} {:7.3} s",
        "start 50 detached sleep containers",
        t.elapsed().as_secs_f64()
    );
    // Idle containers: monitors give back their start-up pages after a second.
    std::thread::sleep(Duration::from_millis(1500));
    let used = before.saturating_sub(mem_available_kib());
    let (n, rss) = proc_kib("berth-monitor", "status", "VmRSS:");
    let (_, pss) = proc_kib("berth-monitor", "smaps_rollup", "Pss:");
    println!(
        "{:42} {:7.1} MiB host memory for 50 ({} monitors: RSS {:.2} MiB, PSS {:.2} MiB each)",
        "memory of 50 running",
        used as f64 / 1024.0,
        n,
        rss as f64 / n.max(1) as f64 / 1024.0,
        pss as f64 / n.max(1) as f64 / 1024.0
    );
    let mut ms = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let (st, b) = call(&sock, "GET", "/containers/json", "");
        assert_eq!(st, 200);
        assert!(
            serde_json::from_slice::<Vec<serde_json::Value>>(&b)
                .unwrap()
                .len()
                >= 50
        );
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    stats("ps with 50 running (GET /containers/json)", ms);
    let t = Instant::now();
    for id in &ids {
        let (st, b) = call(&sock, "DELETE", &format!("/containers/{id}?force=1"), "");
        assert_eq!(st, 204, "{}", String::from_utf8_lossy(&b));
    }
    println!(
        "{:42} {:7.3} s",
        "rm -f of 50 running",
        t.elapsed().as_secs_f64()
    );

    // ps with 1000 containers (created, as `docker ps -a` lists them).
    for i in 0..1000 {
        create(
            &sock,
            &format!(r#"{{"Image":"busybox","Cmd":["true"],"Labels":{{"n":"{i}"}}}}"#),
        );
    }
    // Each create's rootfs is unmounted two seconds later (as Docker does after create):
    // let those 1000 unmounts finish so that they are not timed as part of `ps`.
    std::thread::sleep(Duration::from_secs(3));
    let mut ms = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let (st, b) = call(&sock, "GET", "/containers/json?all=1", "");
        assert_eq!(st, 200);
        assert!(
            serde_json::from_slice::<Vec<serde_json::Value>>(&b)
                .unwrap()
                .len()
                >= 1000
        );
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    stats("ps -a with 1000 containers", ms);
    let t = Instant::now();
    let (st, _) = call(&sock, "POST", "/containers/prune", "");
    assert_eq!(st, 200);
    println!(
        "{:42} {:7.3} s",
        "prune of 1000 created",
        t.elapsed().as_secs_f64()
    );
}
