//! Terminals and signals of foreground `run`/`exec`: hand the pty master to a console
//! socket, or proxy it to our own terminal; forward signals to the container and report
//! its exit status.

use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::termios;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Send the master side over `--console-socket`, as runc does (containerd's recvtty and
/// podman's conmon read it from there).
pub fn send_to_console_socket(path: &Path, master: &OwnedFd) -> Result<()> {
    let sock = UnixStream::connect(path)
        .with_context(|| format!("connecting to console socket {}", path.display()))?;
    let name = b"/dev/ptmx";
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .with_context(|| format!("sending the terminal to {}", path.display()))?;
    Ok(())
}

/// Copies between our terminal and the container's pty while the container runs.
pub struct Proxy {
    saved: Option<termios::Termios>,
    output: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(master: &OwnedFd) -> Result<Proxy> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw)
                .context("putting the terminal in raw mode")?;
            if let Ok((rows, cols)) = berth_runtime::sys::tty::window_size(stdin.as_fd()) {
                let _ = berth_runtime::sys::tty::set_window_size(master.as_fd(), rows, cols);
            }
        }
        let mut to_pty = std::fs::File::from(master.try_clone()?);
        let mut from_pty = std::fs::File::from(master.try_clone()?);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || to_pty.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let output = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut out = std::io::stdout();
            // EIO once the last slave descriptor closes: the container is gone.
            while let Ok(n) = from_pty.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    break;
                }
            }
        });
        Ok(Proxy {
            saved,
            output: Some(output),
        })
    }

    /// After the container exited: let the last output reach our terminal (the copy ends
    /// when the pty reports EIO, once no process holds its other side), then restore it.
    pub fn finish(mut self) {
        if let Some(t) = self.output.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, t);
        }
    }
}

const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
    Signal::SIGCONT,
];

/// Block the signals we forward so `sigwait` receives them. Call only after every child
/// was forked (a blocked mask is inherited across execve).
pub fn block_forwarded_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .context("blocking signals")?;
    Ok(set)
}

pub fn unblock(set: &SigSet) {
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(set), None);
}

/// Exit code as a shell reports it: the status, or 128 + the signal.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Forward signals to `pid` (our child) until it exits; return its exit code.
pub fn forward_until_exit(pid: i32, set: &SigSet, master: Option<&OwnedFd>) -> Result<i32> {
    let pid = Pid::from_raw(pid);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(code);
                }
            }
            Err(nix::Error::ECHILD) => anyhow::bail!("the container process is not our child"),
            Err(e) => return Err(e).context("waiting for the container"),
        }
        let sig = set.wait().context("waiting for signals")?;
        match sig {
            Signal::SIGCHLD => {}
            Signal::SIGWINCH => {
                if let Some(m) = master {
                    if let Ok((rows, cols)) =
                        berth_runtime::sys::tty::window_size(std::io::stdin().as_fd())
                    {
                        let _ = berth_runtime::sys::tty::set_window_size(m.as_fd(), rows, cols);
                    }
                }
            }
            other => {
                let _ = nix::sys::signal::kill(pid, other);
            }
        }
    }
}
