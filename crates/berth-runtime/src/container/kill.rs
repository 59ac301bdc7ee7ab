//! `kill`: send a signal to the container's init (or every process with `all`).

use crate::state::Status;
use nix::sys::signal::Signal;

use super::Container;
use crate::error::{IoContext, Result};

impl Container {
    /// Signal init through a pidfd (never a recycled pid), or every process in the cgroup.
    pub fn kill(&self, signal: Signal, all: bool) -> Result<()> {
        let status = self.status();
        if status == Status::Stopped {
            return Err(self.wrong_state(status, "there is no process to signal"));
        }
        if all {
            for pid in self.pids()? {
                // A process may exit between listing and signalling; that is fine.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
            return Ok(());
        }
        let pidfd = crate::sys::fd::pidfd_open(self.state.pid)
            .ctx(|| format!("opening init (pid {}) of {}", self.state.pid, self.state.id))?;
        // Re-check after opening the pidfd: if the pid was recycled in between, the start
        // time differs and we must not signal.
        if !self.init_alive() {
            return Err(self.wrong_state(Status::Stopped, "there is no process to signal"));
        }
        crate::sys::fd::pidfd_send_signal(&pidfd, signal as i32)
            .ctx(|| format!("sending {signal} to {}", self.state.id))
    }
}
