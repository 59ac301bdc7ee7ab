//! `start`: release a created container's init to run the user's program.

use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::Container;
use crate::error::{IoContext, Result};
use crate::state::{Status, EXEC_FIFO};

/// How long init may take to answer once the fifo is open (it only has to write a byte).
const START_TIMEOUT: Duration = Duration::from_secs(10);

impl Container {
    /// Let the program run: read the byte init writes to `exec.fifo`, remove the fifo
    /// (which is what marks the container running), then run the `poststart` hooks.
    ///
    /// Never blocks on a dead init: the fifo is opened non-blocking and init is watched
    /// through a pidfd. Concurrent starts are serialised by a lock on the state directory.
    pub fn start(&self) -> Result<()> {
        let dir =
            std::fs::File::open(&self.dir).ctx(|| format!("opening {}", self.dir.display()))?;
        let _lock = Flock::lock(dir, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .ctx(|| format!("locking {}", self.dir.display()))?;
        let status = self.status();
        if status != Status::Created {
            return Err(self.wrong_state(status, "only a created container can be started"));
        }
        let init = crate::sys::fd::pidfd_open(self.state.pid)
            .ctx(|| format!("watching init of {}", self.state.id))?;
        let path = self.dir.join(EXEC_FIFO);
        let fifo = nix::fcntl::open(
            &path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("opening {}", path.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let answered = loop {
            let mut fds = [
                PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
                PollFd::new(init.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::from(100u16)) {
                Ok(_) => {}
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "waiting for init".into()),
            }
            let fifo_ready = fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP));
            let init_gone = fds[1]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN));
            if fifo_ready {
                let mut byte = [0u8; 1];
                break std::fs::File::from(fifo.try_clone().ctx(|| "dup".into())?)
                    .read(&mut byte)
                    .unwrap_or(0)
                    == 1;
            }
            if init_gone || Instant::now() >= deadline {
                break false;
            }
        };
        std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
        if !answered {
            return Err(self.wrong_state(
                Status::Stopped,
                "the container's init exited before start; see its output",
            ));
        }
        let spec = self.spec()?;
        if let Some(hooks) = spec.hooks() {
            // A failing poststart hook is reported, but the container keeps running.
            if let Err(e) = crate::hooks::run_hooks(
                "poststart",
                hooks.poststart().as_ref(),
                &self.hook_state(Status::Running),
            ) {
                tracing::warn!(container.id = %self.state.id, error = %e, "poststart hook failed");
            }
        }
        Ok(())
    }
}
