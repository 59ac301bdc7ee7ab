//! The process's stdin as the monitor feeds it: clients' `STDIN` frames are buffered (a
//! process that does not read must not block the monitor) and written when the pipe or
//! terminal takes them; closing waits until the buffer is written, so `echo data | docker
//! run -i` delivers all of `data` before the EOF.
//!
//! With a terminal, input goes through the master and "closing stdin" only stops
//! forwarding it: the terminal also carries the output, so it stays open and the process
//! sees no EOF.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Bytes buffered for the process before clients that send stdin stop being read.
pub const STDIN_BUFFER: usize = 1 << 20;

pub struct StdinSink {
    /// The pipe's write end or a copy of the terminal's master; `None` before the process
    /// exists (an exec's terminal) and after closing.
    fd: Option<File>,
    pending: Vec<u8>,
    pos: usize,
    /// Close once `pending` is written.
    closing: bool,
    /// Closed (or never opened): input is dropped.
    closed: bool,
}

impl StdinSink {
    /// A sink that takes input (`open_stdin`) or one that drops it.
    pub fn new(open: bool) -> StdinSink {
        StdinSink {
            fd: None,
            pending: Vec::new(),
            pos: 0,
            closing: false,
            closed: !open,
        }
    }

    /// The process's end is ready: write what was buffered meanwhile.
    pub fn connect(&mut self, fd: OwnedFd) {
        if self.closed {
            return; // dropping `fd` gives the process its EOF at once
        }
        self.fd = Some(File::from(fd));
        self.flush();
    }

    pub fn has_room(&self) -> bool {
        self.closed || self.pending.len() - self.pos < STDIN_BUFFER
    }

    /// The descriptor to poll for `POLLOUT`, when something waits to be written.
    pub fn wants_write(&self) -> Option<BorrowedFd<'_>> {
        match &self.fd {
            Some(f) if self.pos < self.pending.len() => Some(f.as_fd()),
            _ => None,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.closed || self.closing {
            return;
        }
        self.pending.extend_from_slice(data);
        self.flush();
    }

    /// Close after what is buffered has been written.
    pub fn close_when_written(&mut self) {
        if !self.closed {
            self.closing = true;
            self.flush();
        }
    }

    pub fn flush(&mut self) {
        let Some(f) = self.fd.as_mut() else { return };
        while self.pos < self.pending.len() {
            match f.write(&self.pending[self.pos..]) {
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // EPIPE: the process closed its stdin or exited; nobody will read more.
                Err(_) => {
                    self.close_now();
                    return;
                }
            }
        }
        if self.pos == self.pending.len() {
            self.pending.clear();
            self.pos = 0;
            if self.pending.capacity() > 64 * 1024 {
                self.pending = Vec::new();
            }
            if self.closing {
                self.close_now();
            }
        }
    }

    fn close_now(&mut self) {
        self.fd = None;
        self.closed = true;
        self.pending = Vec::new();
        self.pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (File, OwnedFd) {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .unwrap();
        (File::from(r), w)
    }

    #[test]
    fn buffers_before_connect_and_closes_after_writing() {
        let (mut r, w) = pipe();
        let mut s = StdinSink::new(true);
        s.push(b"early ");
        s.close_when_written();
        s.push(b"dropped");
        s.connect(w);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "early ");
    }

    #[test]
    fn a_full_pipe_keeps_the_rest_pending() {
        let (mut r, w) = pipe();
        let mut s = StdinSink::new(true);
        s.connect(w);
        let big = vec![b'x'; 200 * 1024];
        s.push(&big);
        assert!(s.wants_write().is_some());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while got.len() < big.len() {
            match r.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.flush(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), big.len());
        assert!(s.wants_write().is_none());
    }

    #[test]
    fn closed_sink_drops_input() {
        let (mut r, w) = pipe();
        let mut s = StdinSink::new(false);
        s.push(b"x");
        s.connect(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert!(got.is_empty());
    }
}
