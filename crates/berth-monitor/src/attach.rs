//! One client of the attach socket: its request line, the frames it sends, the frames it
//! is owed.
//!
//! A client never makes the monitor wait: its socket is non-blocking, what it has not read
//! yet is buffered up to [`MAX_BUFFERED`] and a client that falls further behind is
//! dropped (the container's output must keep flowing, and the log must stay complete,
//! whatever one slow reader does).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use berth_monitor::protocol::{frame, AttachRequest};
use nix::poll::PollFlags;

/// Output a client may have pending before it is dropped.
pub const MAX_BUFFERED: usize = 4 << 20;
/// Longest request line accepted.
const MAX_REQUEST: usize = 4096;
/// Reads per client per turn of the event loop, so one busy client cannot starve others.
const READS_PER_TURN: usize = 4;

/// What a client asked of the process.
pub enum Input<'a> {
    Stdin(&'a [u8]),
    Resize {
        rows: u16,
        cols: u16,
    },
    /// This client's stdin ended (`CLOSE_STDIN`, or it stopped sending).
    StdinEnded,
}

pub struct Client {
    stream: UnixStream,
    /// `None` until the request line has arrived.
    request: Option<AttachRequest>,
    /// Received bytes not yet parsed.
    inbuf: Vec<u8>,
    /// Frames not yet sent, from `out_pos` on.
    outbuf: Vec<u8>,
    out_pos: usize,
    /// The client sent EOF (it may still read).
    read_closed: bool,
    /// Its stdin ended, and that was reported.
    stdin_done: bool,
    dead: bool,
}

impl Client {
    pub fn new(stream: UnixStream) -> io::Result<Client> {
        stream.set_nonblocking(true)?;
        Ok(Client {
            stream,
            request: None,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            out_pos: 0,
            read_closed: false,
            stdin_done: false,
            dead: false,
        })
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    pub fn is_dead(&self) -> bool {
        self.dead
    }

    pub fn kill(&mut self) {
        self.dead = true;
    }

    /// It attached stdin and has not ended it yet.
    pub fn holds_stdin(&self) -> bool {
        self.request.is_some_and(|r| r.stdin) && !self.stdin_done
    }

    /// Poll events to ask for. `stdin_has_room`: the process's stdin buffer can take more;
    /// when it cannot, clients that send stdin are not read (backpressure) until it can.
    pub fn interest(&self, stdin_has_room: bool) -> PollFlags {
        let mut ev = PollFlags::empty();
        if !self.read_closed && (stdin_has_room || !self.holds_stdin()) {
            ev |= PollFlags::POLLIN;
        }
        if self.has_pending_output() {
            ev |= PollFlags::POLLOUT;
        }
        ev
    }

    pub fn has_pending_output(&self) -> bool {
        self.out_pos < self.outbuf.len()
    }

    /// Read what the client sent and hand each complete frame to `on_input`.
    pub fn receive(&mut self, scratch: &mut [u8], mut on_input: impl FnMut(Input<'_>)) {
        for _ in 0..READS_PER_TURN {
            if self.dead || self.read_closed {
                return;
            }
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.read_closed = true;
                    if self.holds_stdin() {
                        self.stdin_done = true;
                        on_input(Input::StdinEnded);
                    }
                    // Nothing more will come, and nothing is owed to it: done.
                    if !self.wants_output() {
                        self.dead = true;
                    }
                    return;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    self.parse(&mut on_input);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        if self.inbuf.is_empty() && self.inbuf.capacity() > 64 * 1024 {
            self.inbuf = Vec::new();
        }
    }

    fn wants_output(&self) -> bool {
        match self.request {
            Some(r) => r.stdout || r.stderr,
            None => false,
        }
    }

    fn parse(&mut self, on_input: &mut impl FnMut(Input<'_>)) {
        let mut pos = 0;
        if self.request.is_none() {
            let Some(nl) = self.inbuf.iter().position(|b| *b == b'\n') else {
                if self.inbuf.len() > MAX_REQUEST {
                    self.dead = true;
                }
                return;
            };
            match serde_json::from_slice::<AttachRequest>(&self.inbuf[..nl]) {
                Ok(r) => self.request = Some(r),
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
            pos = nl + 1;
        }
        let stdin = self.holds_stdin();
        while self.inbuf.len() - pos >= 8 {
            let mut header = [0u8; 8];
            header.copy_from_slice(&self.inbuf[pos..pos + 8]);
            let (kind, len) = frame::parse(&header);
            if len > frame::MAX_PAYLOAD {
                self.dead = true;
                return;
            }
            let end = pos + 8 + len as usize;
            if self.inbuf.len() < end {
                break;
            }
            let payload = &self.inbuf[pos + 8..end];
            match kind {
                frame::STDIN if stdin && !self.stdin_done => on_input(Input::Stdin(payload)),
                frame::RESIZE if payload.len() == 4 => on_input(Input::Resize {
                    rows: u16::from_be_bytes([payload[0], payload[1]]),
                    cols: u16::from_be_bytes([payload[2], payload[3]]),
                }),
                frame::CLOSE_STDIN if stdin && !self.stdin_done => {
                    self.stdin_done = true;
                    on_input(Input::StdinEnded);
                }
                // Unknown kinds are skipped: a newer berthd may send more.
                _ => {}
            }
            pos = end;
        }
        self.inbuf.drain(..pos);
    }

    /// Queue process output of frame kind `kind` if the client asked for that stream.
    pub fn queue_output(&mut self, kind: u8, data: &[u8]) {
        let wanted = match (self.request, kind) {
            (Some(r), frame::STDOUT) => r.stdout,
            (Some(r), frame::STDERR) => r.stderr,
            _ => false,
        };
        if !wanted || self.dead {
            return;
        }
        if self.outbuf.len() - self.out_pos + 8 + data.len() > MAX_BUFFERED {
            // Too slow: drop it rather than hold up the container or grow without bound.
            self.dead = true;
            self.outbuf = Vec::new();
            self.out_pos = 0;
            return;
        }
        self.push_frame(kind, data);
    }

    /// Queue the final `EXIT` frame, whatever the client asked for.
    pub fn queue_exit(&mut self, code: i32) {
        if !self.dead {
            self.push_frame(frame::EXIT, &code.to_be_bytes());
        }
    }

    fn push_frame(&mut self, kind: u8, data: &[u8]) {
        if self.out_pos > 0 && self.out_pos == self.outbuf.len() {
            self.outbuf.clear();
            self.out_pos = 0;
        }
        self.outbuf
            .extend_from_slice(&frame::header(kind, data.len() as u32));
        self.outbuf.extend_from_slice(data);
    }

    /// Send what the socket takes now.
    pub fn flush(&mut self) {
        while !self.dead && self.has_pending_output() {
            match self.stream.write(&self.outbuf[self.out_pos..]) {
                Ok(0) => self.dead = true,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => self.dead = true,
            }
        }
        if !self.has_pending_output() {
            self.out_pos = 0;
            self.outbuf.clear();
            if self.outbuf.capacity() > 256 * 1024 {
                self.outbuf = Vec::new();
            }
        } else if self.out_pos > self.outbuf.len() / 2 {
            // Keep the buffer from creeping: move the unsent rest to the front.
            self.outbuf.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Before closing: read and discard what the client sent, so that closing does not
    /// reset the connection (a Unix socket closed with unread data makes the peer's
    /// reads fail with ECONNRESET, which could hide the `EXIT` frame).
    pub fn discard_input(&mut self, scratch: &mut [u8]) {
        for _ in 0..16 {
            match self.stream.read(scratch) {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Client, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Client::new(a).unwrap(), b)
    }

    fn collect(c: &mut Client) -> Vec<String> {
        let mut scratch = vec![0u8; 1024];
        let mut got = Vec::new();
        c.receive(&mut scratch, |i| {
            got.push(match i {
                Input::Stdin(d) => format!("stdin {}", String::from_utf8_lossy(d)),
                Input::Resize { rows, cols } => format!("resize {rows}x{cols}"),
                Input::StdinEnded => "end".to_owned(),
            })
        });
        got
    }

    #[test]
    fn request_then_frames_even_split_across_reads() {
        let (mut c, mut peer) = pair();
        let mut bytes = br#"{"stdin":true,"stdout":true,"stderr":false}"#.to_vec();
        bytes.push(b'\n');
        bytes.extend(frame::encode(frame::STDIN, b"hello"));
        bytes.extend(frame::encode(frame::RESIZE, &[0, 24, 0, 80]));
        bytes.extend(frame::encode(frame::CLOSE_STDIN, b""));
        bytes.extend(frame::encode(frame::STDIN, b"ignored after close"));
        peer.write_all(&bytes[..50]).unwrap();
        let mut got = collect(&mut c);
        peer.write_all(&bytes[50..]).unwrap();
        got.extend(collect(&mut c));
        assert_eq!(got, ["stdin hello", "resize 24x80", "end"]);
        assert!(!c.holds_stdin());
        assert!(!c.is_dead());
    }

    #[test]
    fn stdin_of_a_client_without_stdin_is_ignored_and_eof_ends_stdin() {
        let (mut c, mut peer) = pair();
        peer.write_all(b"{\"stdin\":false,\"stdout\":true,\"stderr\":true}\n")
            .unwrap();
        peer.write_all(&frame::encode(frame::STDIN, b"x")).unwrap();
        assert!(collect(&mut c).is_empty());
        assert!(!c.is_dead());

        let (mut c, mut peer) = pair();
        peer.write_all(b"{\"stdin\":true,\"stdout\":true,\"stderr\":false}\n")
            .unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(collect(&mut c), ["end"]);
        // Half-closed but still reading output.
        assert!(!c.is_dead());
    }

    #[test]
    fn output_follows_the_request_and_overflow_drops() {
        let (mut c, mut peer) = pair();
        peer.write_all(b"{\"stdin\":false,\"stdout\":false,\"stderr\":true}\n")
            .unwrap();
        collect(&mut c);
        c.queue_output(frame::STDOUT, b"not wanted");
        c.queue_output(frame::STDERR, b"oops");
        c.queue_exit(3);
        c.flush();
        let mut want = frame::encode(frame::STDERR, b"oops");
        want.extend(frame::encode(frame::EXIT, &3i32.to_be_bytes()));
        let mut got = vec![0u8; want.len()];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, want);

        // The peer never reads: the socket buffer fills, then our bound drops it.
        let chunk = vec![b'x'; 32 * 1024];
        for _ in 0..(MAX_BUFFERED / chunk.len() + 64) {
            c.queue_output(frame::STDERR, &chunk);
            c.flush();
        }
        assert!(c.is_dead());
    }

    #[test]
    fn bad_requests_drop_the_client() {
        let (mut c, mut peer) = pair();
        peer.write_all(b"not json\n").unwrap();
        collect(&mut c);
        assert!(c.is_dead());

        let (mut c, mut peer) = pair();
        peer.write_all(b"{\"stdin\":false,\"stdout\":true,\"stderr\":true}\n")
            .unwrap();
        peer.write_all(&frame::header(frame::STDIN, frame::MAX_PAYLOAD + 1))
            .unwrap();
        collect(&mut c);
        assert!(c.is_dead());
    }
}
