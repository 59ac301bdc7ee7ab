//! The event loop: one thread, one `poll` over every descriptor the monitor holds.
//!
//! Each turn handles, in this order: new connections on the attach socket, what clients
//! sent (request lines, stdin, resizes), the process's output (to the log and to every
//! client that asked for that stream), then writes to clients and to the process's stdin.
//! Clients come before output so that a client whose request arrived before some output
//! is registered when that output is handed out. Nothing blocks: a descriptor that cannot
//! take more data keeps it buffered (bounded) until `poll` says it can.
//!
//! The caller drives the phases through methods that run turns until something happens:
//! [`Monitor::wait_for`] (the start byte, the process's exit), [`Monitor::drain`] (its last
//! output) and [`Monitor::finish`] (`EXIT` to every client).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use berth_monitor::protocol::frame;
use chrono::Utc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::attach::{Client, Input};
use crate::daemon::diag;
use crate::jsonlog::{JsonLog, Stream};
use crate::stdin::StdinSink;

/// Size of one read of process output (Docker's copier reads 32 KiB too).
const READ_SIZE: usize = 32 * 1024;
/// Reads of one output stream per turn, so a chatty stdout cannot starve stderr or clients.
const READS_PER_TURN: usize = 4;

/// The process's stdio as the monitor holds it.
#[derive(Default)]
pub struct ProcessIo {
    /// Output: the pipe of stdout, or the terminal's master.
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// Input: the pipe's write end, or a copy of the master.
    pub stdin: Option<OwnedFd>,
    /// The terminal, for resizes.
    pub terminal: Option<OwnedFd>,
}

struct Output {
    file: File,
    stream: Stream,
    closed: bool,
}

/// Where clients' input goes.
struct InputSide {
    stdin: StdinSink,
    stdin_once: bool,
    terminal: Option<OwnedFd>,
    /// A resize that arrived before the terminal existed.
    pending_resize: Option<(u16, u16)>,
}

impl InputSide {
    fn apply(&mut self, input: Input<'_>) {
        match input {
            Input::Stdin(data) => self.stdin.push(data),
            Input::Resize { rows, cols } => match &self.terminal {
                Some(t) => {
                    let _ = berth_runtime::sys::tty::set_window_size(t.as_fd(), rows, cols);
                }
                None => self.pending_resize = Some((rows, cols)),
            },
            Input::StdinEnded => self.stdin_ended(),
        }
    }

    /// Docker's StdinOnce: the process's stdin ends with its attached client's.
    fn stdin_ended(&mut self) {
        if self.stdin_once {
            self.stdin.close_when_written();
        }
    }
}

pub struct Monitor {
    listener: UnixListener,
    clients: Vec<Client>,
    outputs: Vec<Output>,
    input: InputSide,
    log: Option<JsonLog>,
    log_failed: bool,
    scratch: Box<[u8]>,
    /// Set once the process has exited: clients that connect get `EXIT` at once.
    exit_code: Option<i32>,
}

/// What a turn saw of the descriptor the caller watches.
#[derive(Debug, PartialEq, Eq)]
enum Watched {
    Quiet,
    Ready,
}

impl Monitor {
    pub fn new(listener: UnixListener, open_stdin: bool, stdin_once: bool) -> io::Result<Monitor> {
        listener.set_nonblocking(true)?;
        Ok(Monitor {
            listener,
            clients: Vec::new(),
            outputs: Vec::new(),
            input: InputSide {
                stdin: StdinSink::new(open_stdin),
                stdin_once,
                terminal: None,
                pending_resize: None,
            },
            log: None,
            log_failed: false,
            scratch: vec![0u8; READ_SIZE].into_boxed_slice(),
            exit_code: None,
        })
    }

    /// Take over the process's stdio (at start; an exec's terminal only exists then).
    pub fn connect_process(&mut self, io: ProcessIo, log: Option<JsonLog>) -> io::Result<()> {
        for (fd, stream) in [(io.stdout, Stream::Stdout), (io.stderr, Stream::Stderr)] {
            if let Some(fd) = fd {
                set_nonblocking(fd.as_fd())?;
                self.outputs.push(Output {
                    file: File::from(fd),
                    stream,
                    closed: false,
                });
            }
        }
        if let Some(fd) = io.stdin {
            set_nonblocking(fd.as_fd())?;
            self.input.stdin.connect(fd);
        }
        if let Some(t) = io.terminal {
            if let Some((rows, cols)) = self.input.pending_resize.take() {
                let _ = berth_runtime::sys::tty::set_window_size(t.as_fd(), rows, cols);
            }
            self.input.terminal = Some(t);
        }
        self.log = log;
        Ok(())
    }

    /// Whether some output stream is still open.
    fn has_output(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// One `poll` and everything it reports. `watch` is the caller's descriptor (the start
    /// gate, the process's pidfd); the result says whether it became readable.
    fn turn(&mut self, watch: Option<BorrowedFd<'_>>, timeout: PollTimeout) -> io::Result<Watched> {
        #[derive(Clone, Copy)]
        enum Slot {
            Watch,
            Listener,
            Output(usize),
            Stdin,
            Client(usize),
        }
        let mut slots = Vec::with_capacity(4 + self.outputs.len() + self.clients.len());
        let mut fds = Vec::with_capacity(slots.capacity());
        if let Some(w) = watch {
            slots.push(Slot::Watch);
            fds.push(PollFd::new(w, PollFlags::POLLIN));
        }
        slots.push(Slot::Listener);
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        for (i, o) in self.outputs.iter().enumerate() {
            slots.push(Slot::Output(i));
            fds.push(PollFd::new(o.file.as_fd(), PollFlags::POLLIN));
        }
        if let Some(fd) = self.input.stdin.wants_write() {
            slots.push(Slot::Stdin);
            fds.push(PollFd::new(fd, PollFlags::POLLOUT));
        }
        let room = self.input.stdin.has_room();
        for (i, c) in self.clients.iter().enumerate() {
            slots.push(Slot::Client(i));
            // Even with no events asked for, poll reports hang-ups and errors.
            fds.push(PollFd::new(c.stream().as_fd(), c.interest(room)));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => return Ok(Watched::Quiet),
            Err(e) => return Err(e.into()),
        }
        let events: Vec<(Slot, PollFlags)> = slots
            .into_iter()
            .zip(
                fds.iter()
                    .map(|f| f.revents().unwrap_or(PollFlags::empty())),
            )
            .filter(|(_, ev)| !ev.is_empty())
            .collect();
        drop(fds);

        let mut watched = Watched::Quiet;
        let mut accept = false;
        let mut stdin_writable = false;
        let mut readable_outputs = Vec::new();
        let mut client_events = Vec::new();
        for (slot, ev) in events {
            match slot {
                Slot::Watch => watched = Watched::Ready,
                Slot::Listener => accept = true,
                Slot::Output(i) => readable_outputs.push(i),
                Slot::Stdin => stdin_writable = true,
                Slot::Client(i) => client_events.push((i, ev)),
            }
        }
        if accept {
            self.accept_clients();
        }
        for (i, ev) in client_events {
            self.client_events(i, ev);
        }
        // Connections and requests that raced with the output below are taken in first.
        if !readable_outputs.is_empty() {
            self.accept_clients();
        }
        for i in readable_outputs {
            self.read_output(i);
        }
        if stdin_writable {
            self.input.stdin.flush();
        }
        for c in &mut self.clients {
            c.flush();
        }
        self.reap_clients();
        self.outputs.retain(|o| !o.closed);
        Ok(watched)
    }

    fn accept_clients(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    let Ok(mut client) = Client::new(stream) else {
                        continue;
                    };
                    if let Some(code) = self.exit_code {
                        client.queue_exit(code);
                    } else {
                        let input = &mut self.input;
                        client.receive(&mut self.scratch, |i| input.apply(i));
                    }
                    self.clients.push(client);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: the connection stays queued; try again next turn.
                    diag(&format!("accepting an attach client: {e}"));
                    return;
                }
            }
        }
    }

    fn client_events(&mut self, i: usize, ev: PollFlags) {
        if !ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            return;
        }
        let client = &mut self.clients[i];
        let input = &mut self.input;
        client.receive(&mut self.scratch, |i| input.apply(i));
        // A hang-up with nothing left to read: the peer is gone for good.
        if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) && !ev.contains(PollFlags::POLLIN)
        {
            client.kill();
        }
    }

    fn reap_clients(&mut self) {
        if !self.clients.iter().any(Client::is_dead) {
            return;
        }
        let input = &mut self.input;
        self.clients.retain(|c| {
            if c.is_dead() && c.holds_stdin() {
                input.stdin_ended();
            }
            !c.is_dead()
        });
    }

    fn read_output(&mut self, i: usize) {
        let stream = self.outputs[i].stream;
        for _ in 0..READS_PER_TURN {
            match self.outputs[i].file.read(&mut self.scratch) {
                Ok(0) => return self.close_output(i),
                Ok(n) => {
                    self.dispatch(stream, n, n < self.scratch.len());
                    if n < self.scratch.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.log_write(stream, &[], true);
                }
                // EIO: the terminal's last slave descriptor closed, i.e. its end of file.
                Err(e) => {
                    if e.raw_os_error() != Some(nix::errno::Errno::EIO as i32) {
                        diag(&format!("reading the process's output: {e}"));
                    }
                    return self.close_output(i);
                }
            }
        }
    }

    /// Hand `scratch[..n]` of `stream` to the clients and the log.
    fn dispatch(&mut self, stream: Stream, n: usize, idle: bool) {
        let kind = match stream {
            Stream::Stdout => frame::STDOUT,
            Stream::Stderr => frame::STDERR,
        };
        for c in &mut self.clients {
            c.queue_output(kind, &self.scratch[..n]);
        }
        let data = std::mem::take(&mut self.scratch);
        self.log_write(stream, &data[..n], idle);
        self.scratch = data;
    }

    fn log_write(&mut self, stream: Stream, data: &[u8], idle: bool) {
        let Some(log) = self.log.as_mut() else { return };
        let time = berth_types::time::rfc3339_nano(&Utc::now());
        let r = log.write(stream, data, idle, &time);
        self.note_log_error(r);
    }

    fn close_output(&mut self, i: usize) {
        self.outputs[i].closed = true;
        let stream = self.outputs[i].stream;
        if let Some(log) = self.log.as_mut() {
            let time = berth_types::time::rfc3339_nano(&Utc::now());
            let r = log.finish(stream, &time);
            self.note_log_error(r);
        }
    }

    /// A failing log (full disk) is reported once; output keeps flowing to clients.
    fn note_log_error(&mut self, r: io::Result<()>) {
        if let Err(e) = r {
            if !self.log_failed {
                self.log_failed = true;
                diag(&format!("writing the container log: {e}"));
            }
        }
    }

    /// Run turns until `watch` becomes readable or `limit` has passed; returns whether it
    /// became readable.
    pub fn wait_within(&mut self, watch: BorrowedFd<'_>, limit: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            if self.turn(Some(watch), timeout(left))? == Watched::Ready {
                return Ok(true);
            }
        }
    }

    /// Run turns until `watch` becomes readable.
    pub fn wait_for(&mut self, watch: BorrowedFd<'_>) -> io::Result<()> {
        while self.turn(Some(watch), PollTimeout::NONE)? != Watched::Ready {}
        Ok(())
    }

    /// Take every connection and request already waiting, without blocking. berthd connects
    /// its attach sessions and writes their requests before the start byte, but one poll
    /// can report the gate before a client's request: settling after the gate makes sure
    /// those clients are registered before the process runs.
    pub fn settle(&mut self) -> io::Result<()> {
        self.turn(None, PollTimeout::ZERO).map(|_| ())
    }

    /// After the process exited: copy what is left of its output, for at most `limit` (a
    /// process it left behind may hold the pipes open forever).
    pub fn drain(&mut self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        while self.has_output() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.turn(None, timeout(left))?;
        }
        for i in 0..self.outputs.len() {
            self.close_output(i);
        }
        self.outputs.clear();
        Ok(())
    }

    /// Send every client `EXIT` with `code`, give them up to `limit` to take what they are
    /// owed, then close them.
    pub fn finish(&mut self, code: i32, limit: Duration) -> io::Result<()> {
        self.exit_code = Some(code);
        for c in &mut self.clients {
            c.queue_exit(code);
            c.flush();
        }
        let deadline = Instant::now() + limit;
        loop {
            self.reap_clients();
            if !self.clients.iter().any(Client::has_pending_output) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.turn(None, timeout(left))?;
        }
        // Late connections got their EXIT on accept; take them too.
        self.accept_clients();
        for c in &mut self.clients {
            c.flush();
            c.discard_input(&mut self.scratch);
        }
        self.clients.clear();
        Ok(())
    }
}

fn timeout(d: Duration) -> PollTimeout {
    // Rounded up, so a deadline is never missed by a sub-millisecond early wake-up.
    let ms = d.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
