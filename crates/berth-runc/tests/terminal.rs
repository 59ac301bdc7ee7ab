//! A container with a terminal: the master side arrives over `--console-socket` (as
//! containerd and podman receive it), the window size is set, and the shell behind it is
//! interactive.

mod support;

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;
use support::*;

fn receive_fd(listener: &UnixListener) -> OwnedFd {
    let (conn, _) = listener.accept().expect("accept on the console socket");
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed this descriptor for us.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor received on the console socket");
}

/// Read from the pty until `needle` shows up (or fail after 20 s).
fn read_until(pty: &mut std::fs::File, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    nix::fcntl::fcntl(
        &*pty,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    while !seen.contains(needle) {
        assert!(
            Instant::now() < deadline,
            "{needle:?} never appeared; terminal showed: {seen:?}"
        );
        match pty.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("reading the terminal: {e} (seen: {seen:?})"),
        }
    }
    seen
}

#[test]
fn interactive_shell_over_console_socket() {
    let mut b = Bundle::new(&["sh"]);
    b.spec["process"]["terminal"] = json!(true);
    b.spec["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    b.write_spec_now();
    let sock_path = b.dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let mut c = b.cmd(&["create", "--console-socket"]);
    c.arg(&sock_path)
        .arg("--bundle")
        .arg(b.dir.path())
        .arg(&b.id);
    let create = std::thread::spawn(move || output_within(c, Duration::from_secs(60)));
    let master = receive_fd(&listener);
    ok(&create.join().unwrap());
    ok(&b.rt(&["start", &b.id]));

    let mut pty = std::fs::File::from(master);
    pty.write_all(b"tty; stty size; echo answer-$((6*7)); exit\n")
        .unwrap();
    let seen = read_until(&mut pty, "answer-42");
    assert!(
        seen.contains("/dev/pts/0"),
        "stdio is not the container's pty: {seen:?}"
    );
    if is_berth() {
        // runc leaves consoleSize to the caller; berth-runc applies it.
        assert!(seen.contains("33 101"), "consoleSize not applied: {seen:?}");
    }
    assert!(eventually(Duration::from_secs(10), || b.state()["status"] == "stopped"));
    ok(&b.rt(&["delete", &b.id]));
    b.assert_no_leftovers();
}

#[test]
fn exec_with_a_terminal() {
    let b = Bundle::new(&["sleep", "1000"]);
    ok(&b.run_detached());
    let sock_path = b.dir.path().join("exec.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let mut c = b.cmd(&["exec", "--tty", "--detach", "--console-socket"]);
    c.arg(&sock_path)
        .arg(&b.id)
        .args(["sh", "-c", "tty; echo exec-$((2*21))"]);
    let exec = std::thread::spawn(move || output_within(c, Duration::from_secs(60)));
    let master = receive_fd(&listener);
    ok(&exec.join().unwrap());
    let mut pty = std::fs::File::from(master);
    let seen = read_until(&mut pty, "exec-42");
    assert!(seen.contains("/dev/pts/"), "{seen:?}");
    ok(&b.rt(&["delete", "--force", &b.id]));
    b.assert_no_leftovers();
}
