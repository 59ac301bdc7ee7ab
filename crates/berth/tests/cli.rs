//! The `berth` binary as users run it: `berth registry serve` answers the distribution API,
//! stops cleanly on SIGTERM and SIGINT, and start-up mistakes exit with a message naming
//! the fix.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A running `berth registry serve`, killed on drop if a test did not stop it.
struct Serve {
    child: Option<Child>,
    addr: String,
}

impl Serve {
    fn start(data_root: &Path) -> Serve {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(BERTH)
            .args(["registry", "serve", "--addr", &addr, "--data-root"])
            .arg(data_root)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut serve = Serve {
            child: Some(child),
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&serve.addr).is_err() {
            if let Some(status) = serve.child().try_wait().unwrap() {
                panic!("berth registry serve exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "berth did not listen on {}",
                serve.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        serve
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    /// Sends `signal` and returns how the process ended, with its stderr.
    fn stop(mut self, signal: Signal) -> Output {
        let child = self.child.take().unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        kill(pid, signal).unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One plain HTTP/1.1 request; the whole response as text.
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn http_get(addr: &str, path: &str) -> String {
    http(addr, "GET", path, b"")
}

/// The value of header `name` in a response.
fn header<'a>(response: &'a str, name: &str) -> &'a str {
    response
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {response}"))
}

fn sha256_hex(data: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(data)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[test]
fn registry_serve_answers_and_stops_on_signals() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let dir = tempfile::tempdir().unwrap();
        let serve = Serve::start(dir.path());
        let response = http_get(&serve.addr, "/v2/");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response
                .to_lowercase()
                .contains("docker-distribution-api-version: registry/2.0"),
            "{response}"
        );
        let catalog = http_get(&serve.addr, "/v2/_catalog");
        assert!(catalog.ends_with("{\"repositories\":[]}"), "{catalog}");

        let output = serve.stop(signal);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{signal}: {}\n{stderr}",
            output.status
        );
        assert!(stderr.contains("stopping"), "{stderr}");
        assert!(dir.path().join("registry/repositories").is_dir());
    }
}

#[test]
fn startup_mistakes_exit_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();

    // A second server on the same data root.
    let serve = Serve::start(dir.path());
    let second = Command::new(BERTH)
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--data-root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another registry server already serves"),
        "{stderr}"
    );
    drop(serve);

    // A certificate without its key is a usage error.
    let usage = Command::new(BERTH)
        .args(["registry", "serve", "--tls-cert", "/nonexistent.crt"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--tls-key"));

    // An htpasswd file with a non-bcrypt entry.
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").unwrap();
    let weak = Command::new(BERTH)
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--data-root"])
        .arg(dir.path().join("other"))
        .arg("--htpasswd")
        .arg(&htpasswd)
        .output()
        .unwrap();
    assert_eq!(weak.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&weak.stderr);
    assert!(
        stderr.contains("line 1") && stderr.contains("htpasswd -B"),
        "{stderr}"
    );
}

#[test]
fn help_lists_the_registry_command() {
    let help = Command::new(BERTH).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("registry"));
    let serve_help = Command::new(BERTH)
        .args(["registry", "serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&serve_help.stdout);
    for flag in [
        "--addr",
        "--data-root",
        "--htpasswd",
        "--realm",
        "--tls-cert",
        "--tls-key",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

#[test]
fn a_killed_server_restarts_with_its_repositories_and_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let blob = b"pushed before the crash";
    let digest = format!("sha256:{}", sha256_hex(blob));
    let pushed = http(
        &serve.addr,
        "POST",
        &format!("/v2/crash/blobs/uploads/?digest={digest}"),
        blob,
    );
    assert!(pushed.starts_with("HTTP/1.1 201"), "{pushed}");
    let started = http(&serve.addr, "POST", "/v2/crash/blobs/uploads/", b"");
    let location = header(&started, "location").to_owned();
    let patched = http(&serve.addr, "PATCH", &location, b"first half, ");
    assert!(patched.starts_with("HTTP/1.1 202"), "{patched}");

    // SIGKILL: no destructor, no graceful shutdown.
    let output = serve.stop(Signal::SIGKILL);
    assert!(!output.status.success());

    let serve = Serve::start(dir.path());
    let head = http(
        &serve.addr,
        "HEAD",
        &format!("/v2/crash/blobs/{digest}"),
        b"",
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let status = http_get(&serve.addr, &location);
    assert!(status.starts_with("HTTP/1.1 204"), "{status}");
    assert_eq!(header(&status, "range"), "0-11");
    let whole = format!("sha256:{}", sha256_hex(b"first half, second half"));
    let finished = http(
        &serve.addr,
        "PUT",
        &format!("{location}?digest={whole}"),
        b"second half",
    );
    assert!(finished.starts_with("HTTP/1.1 201"), "{finished}");
    let catalog = http_get(&serve.addr, "/v2/_catalog");
    assert!(
        catalog.ends_with("{\"repositories\":[\"crash\"]}"),
        "{catalog}"
    );
}
