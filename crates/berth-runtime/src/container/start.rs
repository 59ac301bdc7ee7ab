//! `start`: release a created container's init to run the user's program.

use std::io::Read;

use crate::state::Status;

use super::Container;
use crate::error::{IoContext, Result};
use crate::state::EXEC_FIFO;

impl Container {
    /// Let the program run: read the byte init writes to `exec.fifo`, remove the fifo
    /// (which is what marks the container running), then run the `poststart` hooks.
    pub fn start(&self) -> Result<()> {
        let status = self.status();
        if status != Status::Created {
            return Err(self.wrong_state(status, "only a created container can be started"));
        }
        let path = self.dir.join(EXEC_FIFO);
        let mut fifo = std::fs::File::open(&path).ctx(|| format!("opening {}", path.display()))?;
        let mut byte = [0u8; 1];
        let n = fifo
            .read(&mut byte)
            .ctx(|| format!("reading {}", path.display()))?;
        std::fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
        if n == 0 {
            // The writer went away without writing: init died before reaching the program.
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
