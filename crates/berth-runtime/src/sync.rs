//! The channel between the runtime and the processes it creates.
//!
//! A `SOCK_SEQPACKET` socket pair keeps message boundaries, carries file descriptors (the
//! terminal's master side) and reports EOF when the other side dies, so a child that
//! crashes mid-setup is noticed at once instead of hanging the caller.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

/// One message of the set-up protocol.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Msg {
    /// The intermediate child has created the user namespace; write its id maps.
    MapIds,
    /// Go on with the next step.
    Continue,
    /// The container's init was born with this pid (in the caller's pid namespace).
    InitPid(i32),
    /// Namespaces exist; the caller may run `prestart`/`createRuntime` hooks now.
    NamespacesReady,
    /// The terminal's master side travels with this message.
    Terminal,
    /// Set-up is complete; init waits for `start`.
    Created,
    /// Set-up failed at `step`.
    Error { step: String, message: String },
}

/// One end of the channel.
pub(crate) struct Channel {
    fd: OwnedFd,
}

const MAX_MSG: usize = 64 * 1024;

impl Channel {
    /// A connected pair: (runtime side, child side). Both are close-on-exec.
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn send(&self, msg: &Msg) -> io::Result<()> {
        self.send_with_fd(msg, None)
    }

    pub fn send_with_fd(&self, msg: &Msg, fd: Option<RawFd>) -> io::Result<()> {
        let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
        let iov = [IoSlice::new(&bytes)];
        let fds;
        let cmsgs: &[ControlMessage] = match fd {
            Some(fd) => {
                fds = [fd];
                &[ControlMessage::ScmRights(&fds)]
            }
            None => &[],
        };
        loop {
            // MSG_NOSIGNAL: a dead peer is an error to report, not a SIGPIPE.
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Receive one message. `Ok(None)` means the other side closed (or died).
    pub fn recv(&self) -> io::Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MSG];
        let (len, fd) = crate::sys::fd::recv_with_fd(self.fd.as_fd(), &mut buf)?;
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len]).map_err(io::Error::other)?;
        Ok(Some((msg, fd)))
    }

    /// Receive a message and require it to be `Continue`.
    pub fn expect_continue(&self) -> io::Result<()> {
        match self.recv()? {
            Some((Msg::Continue, _)) => Ok(()),
            Some((other, _)) => Err(io::Error::other(format!("unexpected message {other:?}"))),
            None => Err(io::Error::other("the runtime went away")),
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
