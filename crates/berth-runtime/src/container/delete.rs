//! `delete`: remove a stopped container (or kill it first with `force`): its processes, its
//! cgroup and its state, then run the `poststop` hooks.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::state::Status;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::Container;
use crate::error::{IoContext, Result};

impl Container {
    pub fn delete(self, force: bool) -> Result<()> {
        let status = self.status();
        match status {
            Status::Stopped => {}
            // A created container never ran the user's program: deleting it is safe.
            Status::Created => self.kill_and_wait()?,
            Status::Running | Status::Paused if force => self.kill_and_wait()?,
            other => {
                return Err(self.wrong_state(other, "stop it first, or delete it with --force"))
            }
        }
        let spec = self.spec().ok();
        let cgroup = self.cgroup()?;
        // Without a pid namespace, init's death does not take the other processes along.
        for pid in cgroup.pids().unwrap_or_default() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        cgroup.destroy()?;
        std::fs::remove_dir_all(&self.dir).ctx(|| format!("removing {}", self.dir.display()))?;
        if let Some(hooks) = spec.as_ref().and_then(|s| s.hooks().as_ref()) {
            if let Err(e) = crate::hooks::run_hooks(
                "poststop",
                hooks.poststop().as_ref(),
                &self.hook_state(Status::Stopped),
            ) {
                tracing::warn!(container.id = %self.state.id, error = %e, "poststop hook failed");
            }
        }
        Ok(())
    }

    /// SIGKILL everything (thawing first: a frozen process cannot die) and wait until init
    /// is gone.
    fn kill_and_wait(&self) -> Result<()> {
        let cgroup = self.cgroup()?;
        let _ = cgroup.thaw();
        let pidfd = match crate::sys::fd::pidfd_open(self.state.pid) {
            Ok(fd) if self.init_alive() => fd,
            _ => return Ok(()),
        };
        crate::sys::fd::pidfd_send_signal(&pidfd, libc::SIGKILL)
            .ctx(|| format!("killing {}", self.state.id))?;
        for pid in cgroup.pids().unwrap_or_default() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // The pidfd becomes readable when the process exits (even if we are not its parent).
        while Instant::now() < deadline {
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(e).ctx(|| "waiting for init to exit".into()),
            }
        }
        Err(std::io::Error::from(std::io::ErrorKind::TimedOut)).ctx(|| {
            format!(
                "container {} did not die within 10s of SIGKILL",
                self.state.id
            )
        })
    }
}
