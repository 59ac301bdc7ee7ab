//! `pause` and `resume`: freeze and thaw every process of the container via its cgroup.

use crate::state::Status;

use super::Container;
use crate::error::Result;

impl Container {
    pub fn pause(&self) -> Result<()> {
        match self.status() {
            Status::Running | Status::Created => Ok(self.cgroup()?.freeze()?),
            other => Err(self.wrong_state(other, "only a running container can be paused")),
        }
    }

    pub fn resume(&self) -> Result<()> {
        match self.status() {
            Status::Paused => Ok(self.cgroup()?.thaw()?),
            other => Err(self.wrong_state(other, "only a paused container can be resumed")),
        }
    }
}
