//! The embedded DNS server: berth's counterpart of Docker's resolver at 127.0.0.11.
//!
//! A container on a user-defined network resolves the names of the other containers on
//! its networks (container names, network aliases, short IDs) through a server at
//! `127.0.0.11:53`, which its `/etc/resolv.conf` names as its only nameserver. Docker
//! behaves so, and images and compose files rely on it, so berth answers the same way:
//! names berth knows get A records with a TTL of 600 (and an empty NOERROR answer for
//! other types, as there is no IPv6 on container networks); every other name is forwarded
//! to the host's resolvers (or the container's `--dns`) and the reply relayed unchanged.
//!
//! The sockets are made by berthd, not by a process inside the container: a thread of
//! berthd enters the container's network namespace only long enough to bind
//! `127.0.0.11:53` there ([`bind_in_netns`]). A socket stays in the namespace it was made
//! in, so berthd can serve it from its ordinary tokio runtime without any of its threads
//! living in the container's namespace, and without a helper process per container.
//! Docker binds random ports and redirects port 53 to them with iptables rules inside
//! the namespace; berthd is root there, so it binds port 53 directly and needs no rules.
//!
//! Forwarding happens from berthd's own namespace ([`serve`] uses ordinary tokio sockets,
//! made wherever the serving task runs). That is the point of the design: the host's
//! resolver is often a loopback address (systemd-resolved at 127.0.0.53, a local dnsmasq)
//! that the container's namespace cannot reach, and the container need not be allowed to
//! reach the host's upstreams itself.
//!
//! Everything read from the network is untrusted: malformed packets are dropped, a TCP
//! connection that sends one is closed, connections are capped and time out when idle.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::BuildHasher;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nix::sched::{setns, CloneFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tracing::{debug, warn};

/// Where the server listens inside a container's namespace, as Docker's does.
pub const LISTEN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 11), 53);

/// TTL of the records berth answers itself (Docker's value).
const TTL: u32 = 600;
/// How long one upstream gets to answer one query, over UDP and again over TCP.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most TCP connections served at once per server; further ones are closed at once.
const MAX_TCP_CONNECTIONS: usize = 64;
/// Most UDP queries in progress at once per server (forwarding may wait on upstreams);
/// further ones are dropped and the client retries.
const MAX_UDP_IN_FLIGHT: usize = 256;
/// Largest UDP reply to a client that did not advertise a size with EDNS (RFC 1035).
const UDP_MIN_PAYLOAD: usize = 512;
/// Largest UDP reply berth sends, whatever size the client advertises.
const UDP_MAX_PAYLOAD: u16 = 4096;
/// Largest DNS message: over TCP its length is a u16, over UDP it is bounded by IPv4.
const MAX_MESSAGE: usize = u16::MAX as usize;
/// How long a serving loop rests after a socket error, so a persistent one cannot spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// What the server needs from berthd: names as seen from one container.
pub trait Names: Send + Sync + 'static {
    /// IPv4 addresses of `name` (lower-cased, without the trailing dot) as seen by the container
    /// `scope` (its ID): Some(addrs) when berth knows the name (a container name, network alias
    /// or short ID on a network shared with `scope`), None to forward the query upstream.
    fn lookup(&self, scope: &str, name: &str) -> Option<Vec<Ipv4Addr>>;
    /// The name for a PTR query of `ip`, when it is a container on a network shared with `scope`.
    fn reverse(&self, scope: &str, ip: Ipv4Addr) -> Option<String>;
    /// Upstream servers for names berth does not know (host resolvers or the container's --dns).
    fn upstreams(&self, scope: &str) -> Vec<SocketAddr>;
}

/// `err` with `what` was being done prepended to its message, keeping its kind.
fn context(what: impl std::fmt::Display, err: impl Into<io::Error>) -> io::Error {
    let err = err.into();
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Bind UDP and TCP 127.0.0.11:53 inside the network namespace opened as `netns`
/// (a file such as /run/berth/netns/<id> or /proc/<pid>/ns/net). Done on a short-lived
/// std::thread that setns()es into it (so no runtime thread changes namespace); the sockets
/// keep belonging to that namespace afterwards. The TCP listener is listening; both sockets
/// are non-blocking and close-on-exec. The loopback interface of that namespace is up already.
pub fn bind_in_netns(netns: &File) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let netns = netns
        .try_clone()
        .map_err(|e| context("duplicating the namespace file", e))?;
    std::thread::Builder::new()
        .name("berth-dns-bind".into())
        .spawn(move || {
            setns(&netns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| context("entering the container's network namespace", e))?;
            bind(SocketAddr::V4(LISTEN))
        })
        .map_err(|e| context("starting the DNS bind thread", e))?
        .join()
        .map_err(|_| io::Error::other("the DNS bind thread panicked"))?
}

/// Bind a non-blocking UDP socket and a listening TCP socket on `addr` in the calling
/// thread's namespace. The standard library makes both close-on-exec.
fn bind(addr: SocketAddr) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let udp =
        std::net::UdpSocket::bind(addr).map_err(|e| context(format!("binding UDP {addr}"), e))?;
    let tcp =
        std::net::TcpListener::bind(addr).map_err(|e| context(format!("binding TCP {addr}"), e))?;
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    Ok((udp, tcp))
}

/// A running DNS server; dropping it (or [`Server::abort`]) stops it, including the
/// queries and connections in progress.
#[derive(Debug)]
pub struct Server {
    udp: JoinHandle<()>,
    tcp: JoinHandle<()>,
}

impl Server {
    /// Stop serving. The sockets are closed once the tasks have been dropped.
    pub fn abort(&self) {
        self.udp.abort();
        self.tcp.abort();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Serve queries on both sockets until the returned handle is dropped or aborted (tokio tasks
/// on the current runtime, which must have IO enabled). `scope` is passed to every Names call.
pub fn serve(
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    scope: String,
    names: Arc<dyn Names>,
) -> io::Result<Server> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| io::Error::other(format!("the DNS server needs a tokio runtime: {e}")))?;
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    let udp = tokio::net::UdpSocket::from_std(udp)
        .map_err(|e| context("registering the DNS UDP socket", e))?;
    let tcp = tokio::net::TcpListener::from_std(tcp)
        .map_err(|e| context("registering the DNS TCP listener", e))?;
    let resolver = Arc::new(Resolver { scope, names });
    Ok(Server {
        udp: runtime.spawn(serve_udp(Arc::new(udp), Arc::clone(&resolver))),
        tcp: runtime.spawn(serve_tcp(tcp, resolver)),
    })
}

/// Receive UDP queries and answer each on a task of its own (a forwarded query may wait
/// on upstreams). The tasks live in a set owned by this loop, so aborting it ends them.
async fn serve_udp(socket: Arc<tokio::net::UdpSocket>, resolver: Arc<Resolver>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut queries = JoinSet::new();
    loop {
        let received = socket.recv_from(&mut buf).await;
        while queries.try_join_next().is_some() {}
        let (len, peer) = match received {
            Ok(received) => received,
            Err(e) => {
                debug!("DNS: receiving a UDP query: {e}");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        if queries.len() >= MAX_UDP_IN_FLIGHT {
            debug!("DNS: dropping a query from {peer}: too many in progress");
            continue;
        }
        let packet = buf[..len].to_vec();
        let (socket, resolver) = (Arc::clone(&socket), Arc::clone(&resolver));
        queries.spawn(async move {
            let Some(reply) = resolver.answer(&packet, Transport::Udp).await else {
                return;
            };
            if let Err(e) = socket.send_to(&reply, peer).await {
                debug!("DNS: replying to {peer}: {e}");
            }
        });
    }
}

/// Accept TCP connections, at most [`MAX_TCP_CONNECTIONS`] at once, each served on a task
/// in a set owned by this loop, so aborting it ends them.
async fn serve_tcp(listener: tokio::net::TcpListener, resolver: Arc<Resolver>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!("DNS: accepting a TCP connection: {e}");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        if connections.len() >= MAX_TCP_CONNECTIONS {
            debug!("DNS: closing a connection from {peer}: too many open");
            continue;
        }
        let resolver = Arc::clone(&resolver);
        connections.spawn(async move {
            if let Err(e) = serve_connection(stream, &resolver).await {
                debug!("DNS: TCP connection from {peer}: {e}");
            }
        });
    }
}

/// Answer length-prefixed queries on one TCP connection, in turn, until the client closes
/// it, stays idle for [`TCP_IDLE`] or sends something that is not a DNS query.
async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    resolver: &Resolver,
) -> io::Result<()> {
    loop {
        let Some(query) = read_framed(&mut stream, TCP_IDLE).await? else {
            return Ok(());
        };
        let Some(reply) = resolver.answer(&query, Transport::Tcp).await else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed query",
            ));
        };
        let write = write_framed(&mut stream, &reply);
        timeout(TCP_IDLE, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing a reply timed out"))??;
    }
}

/// Read one length-prefixed DNS message, waiting at most `wait` for each part; None when
/// the peer closed the connection or stayed silent before a new message began.
async fn read_framed(
    stream: &mut tokio::net::TcpStream,
    wait: Duration,
) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match timeout(wait, stream.read_exact(&mut len)).await {
        Err(_) => return Ok(None),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(result) => result?,
    };
    let len = usize::from(u16::from_be_bytes(len));
    if len == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty message"));
    }
    let mut message = vec![0u8; len];
    timeout(wait, stream.read_exact(&mut message))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "reading a message timed out"))??;
    Ok(Some(message))
}

/// Write one DNS message with its length prefix, in one write.
async fn write_framed(stream: &mut tokio::net::TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "message too long for TCP"))?;
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

/// How a query arrived, which bounds the size of its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The largest reply the client of `request` accepts on this transport.
    fn limit(self, request: &Message) -> usize {
        match self {
            Transport::Tcp => MAX_MESSAGE,
            Transport::Udp => request
                .extensions()
                .as_ref()
                .map_or(UDP_MIN_PAYLOAD, |edns| usize::from(edns.max_payload()))
                .clamp(UDP_MIN_PAYLOAD, usize::from(UDP_MAX_PAYLOAD)),
        }
    }
}

/// Answers queries for one container.
struct Resolver {
    scope: String,
    names: Arc<dyn Names>,
}

impl Resolver {
    /// The reply to the query `packet`, or None when it should be dropped (not a DNS query).
    async fn answer(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(packet) {
            Ok(request) => request,
            Err(e) => {
                debug!("DNS: dropping a malformed query: {e}");
                return None;
            }
        };
        if request.message_type() != MessageType::Query {
            debug!("DNS: dropping a message that is not a query");
            return None;
        }
        let limit = transport.limit(&request);
        let Some(question) = request.queries().first() else {
            return encode(response(&request, ResponseCode::FormErr), limit);
        };
        if request.op_code() != OpCode::Query {
            return encode(response(&request, ResponseCode::NotImp), limit);
        }
        if let Some(answers) = self.local_answers(question) {
            let mut reply = response(&request, ResponseCode::NoError);
            reply.set_authoritative(true).add_answers(answers);
            return encode(reply, limit);
        }
        match self.forward(packet, request.id(), limit).await {
            Some(reply) => Some(reply),
            None => encode(response(&request, ResponseCode::ServFail), limit),
        }
    }

    /// The answer records when berth knows the name in `question`, None to forward it.
    fn local_answers(&self, question: &Query) -> Option<Vec<Record>> {
        if question.query_class() != DNSClass::IN {
            return None;
        }
        let name = plain_name(question.name());
        if name.is_empty() {
            return None;
        }
        if question.query_type() == RecordType::PTR {
            if let Some(ip) = reverse_ipv4(&name) {
                return self
                    .ptr_answer(question.name(), ip)
                    .map(|record| vec![record]);
            }
        }
        let addrs = self.names.lookup(&self.scope, &name)?;
        let records = match question.query_type() {
            RecordType::A | RecordType::ANY => addrs
                .into_iter()
                .map(|ip| Record::from_rdata(question.name().clone(), TTL, RData::A(A(ip))))
                .collect(),
            _ => Vec::new(),
        };
        Some(records)
    }

    /// The PTR record naming `ip`, owned by `owner`, when it is a container berth knows.
    fn ptr_answer(&self, owner: &Name, ip: Ipv4Addr) -> Option<Record> {
        let target = self.names.reverse(&self.scope, ip)?;
        let fqdn = format!("{}.", target.trim_end_matches('.'));
        match Name::from_ascii(&fqdn) {
            Ok(target) => Some(Record::from_rdata(
                owner.clone(),
                TTL,
                RData::PTR(PTR(target)),
            )),
            Err(e) => {
                warn!("DNS: cannot answer the PTR query of {ip} with {fqdn:?}: {e}");
                None
            }
        }
    }

    /// Relay `packet` to the upstreams in turn and return the first good reply, with the
    /// client's `id`. An upstream answering SERVFAIL or REFUSED is passed over for the next
    /// one, its reply kept in case no other does better. None when none answered.
    async fn forward(&self, packet: &[u8], id: u16, limit: usize) -> Option<Vec<u8>> {
        let mut fallback = None;
        for upstream in self.names.upstreams(&self.scope) {
            match exchange(packet, upstream, limit).await {
                Ok(mut reply) => {
                    reply[..2].copy_from_slice(&id.to_be_bytes());
                    if !is_failure(&reply) {
                        return Some(reply);
                    }
                    debug!("DNS: upstream {upstream} failed the query");
                    fallback = Some(reply);
                }
                Err(e) => debug!("DNS: {e}"),
            }
        }
        fallback
    }
}

/// A response to `request` with `code`: its ID, opcode and RD flag, RA set, its first
/// question echoed, and an EDNS record when the request had one.
fn response(request: &Message, code: ResponseCode) -> Message {
    let mut reply = Message::new();
    reply.set_header(Header::response_from_request(request.header()));
    reply.set_recursion_available(true).set_response_code(code);
    if let Some(question) = request.queries().first() {
        reply.add_query(question.clone());
    }
    if request.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_MAX_PAYLOAD);
        reply.set_edns(edns);
    }
    reply
}

/// Encode `reply`; when it is longer than `limit`, encode it without its records and with
/// the TC flag instead, so that the client asks again over TCP.
fn encode(mut reply: Message, limit: usize) -> Option<Vec<u8>> {
    match reply.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return Some(bytes),
        Ok(_) => {}
        Err(e) => {
            warn!("DNS: encoding a reply: {e}");
            return None;
        }
    }
    reply.answers_mut().clear();
    reply.name_servers_mut().clear();
    reply.additionals_mut().clear();
    reply.set_truncated(true);
    reply
        .to_vec()
        .map_err(|e| warn!("DNS: encoding a truncated reply: {e}"))
        .ok()
}

/// `name` lower-cased, without its trailing dot.
fn plain_name(name: &Name) -> String {
    let mut name = name.to_ascii().to_ascii_lowercase();
    if name.ends_with('.') {
        name.pop();
    }
    name
}

/// The address named by a reverse name `d.c.b.a.in-addr.arpa` (lower-case, no trailing dot).
fn reverse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let labels = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut labels = labels.split('.');
    for octet in octets.iter_mut().rev() {
        let label = labels.next()?;
        if label.is_empty() || label.len() > 3 || !label.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = label.parse().ok()?;
    }
    match labels.next() {
        None => Some(Ipv4Addr::from(octets)),
        Some(_) => None,
    }
}

/// Whether the (at least 12-byte) reply `message` has the QR flag set.
fn is_response(message: &[u8]) -> bool {
    message[2] & 0x80 != 0
}

/// Whether the (at least 12-byte) reply `message` has the TC flag set.
fn is_truncated(message: &[u8]) -> bool {
    message[2] & 0x02 != 0
}

/// Whether the (at least 12-byte) reply `message` is SERVFAIL or REFUSED.
fn is_failure(message: &[u8]) -> bool {
    let code = message[3] & 0x0f;
    code == ResponseCode::ServFail.low() || code == ResponseCode::Refused.low()
}

/// Whether `message` is a reply to the query with `id`.
fn answers_id(message: &[u8], id: u16) -> bool {
    message.len() >= 12 && is_response(message) && message[..2] == id.to_be_bytes()
}

/// A random query ID for a forwarded query, so that a reply cannot be forged by guessing
/// the client's (the hasher keys are random and differ at each call).
fn random_id() -> u16 {
    // Keep the low 16 bits of a random 64-bit hash.
    (RandomState::new().hash_one(0u8) & 0xffff) as u16
}

/// Ask `upstream` the query `packet` over UDP, and again over TCP when the UDP reply is
/// truncated and the TCP one fits in `limit`. The reply still has the ID it was sent with.
async fn exchange(packet: &[u8], upstream: SocketAddr, limit: usize) -> io::Result<Vec<u8>> {
    if packet.len() < 12 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "query too short",
        ));
    }
    let id = random_id();
    let mut query = packet.to_vec();
    query[..2].copy_from_slice(&id.to_be_bytes());
    let reply = timeout(UPSTREAM_TIMEOUT, exchange_udp(&query, upstream, id))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{upstream} (UDP) timed out"),
            )
        })?
        .map_err(|e| context(format!("forwarding to {upstream} (UDP)"), e))?;
    if !is_truncated(&reply) {
        return Ok(reply);
    }
    match timeout(UPSTREAM_TIMEOUT, exchange_tcp(&query, upstream, id)).await {
        Ok(Ok(full)) if full.len() <= limit => Ok(full),
        Ok(Ok(_)) => Ok(reply),
        Ok(Err(e)) => {
            debug!("DNS: forwarding to {upstream} (TCP): {e}; relaying the truncated reply");
            Ok(reply)
        }
        Err(_) => {
            debug!("DNS: {upstream} (TCP) timed out; relaying the truncated reply");
            Ok(reply)
        }
    }
}

/// Send `query` to `upstream` from a new socket of berthd's namespace and wait for the
/// reply with `id`, ignoring anything else.
async fn exchange_udp(query: &[u8], upstream: SocketAddr, id: u16) -> io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buf).await?;
        if answers_id(&buf[..len], id) {
            buf.truncate(len);
            return Ok(buf);
        }
        debug!("DNS: ignoring a stray packet from {upstream}");
    }
}

/// Send `query` to `upstream` over a new TCP connection and read the reply with `id`.
async fn exchange_tcp(query: &[u8], upstream: SocketAddr, id: u16) -> io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(upstream).await?;
    write_framed(&mut stream, query).await?;
    let reply = read_framed(&mut stream, UPSTREAM_TIMEOUT)
        .await?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed without a reply"))?;
    if !answers_id(&reply, id) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a reply to the query",
        ));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::process::Command;
    use std::sync::Mutex;

    const SCOPE: &str = "c1";
    const WEB1: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 2);
    const WEB2: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 3);
    const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    /// Names known to the container [`SCOPE`] only; records every scope it is asked for.
    struct FakeNames {
        names: HashMap<&'static str, Vec<Ipv4Addr>>,
        upstreams: Vec<SocketAddr>,
        scopes: Mutex<Vec<String>>,
    }

    impl FakeNames {
        fn new(upstreams: Vec<SocketAddr>) -> Arc<Self> {
            let names = HashMap::from([("web", vec![WEB1, WEB2]), ("db", vec![])]);
            Arc::new(FakeNames {
                names,
                upstreams,
                scopes: Mutex::new(Vec::new()),
            })
        }

        fn saw(&self, scope: &str) {
            self.scopes.lock().unwrap().push(scope.to_owned());
        }
    }

    impl Names for FakeNames {
        fn lookup(&self, scope: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
            self.saw(scope);
            (scope == SCOPE)
                .then(|| self.names.get(name).cloned())
                .flatten()
        }

        fn reverse(&self, scope: &str, ip: Ipv4Addr) -> Option<String> {
            self.saw(scope);
            (scope == SCOPE && ip == WEB1).then(|| "web.mynet".to_owned())
        }

        fn upstreams(&self, scope: &str) -> Vec<SocketAddr> {
            self.saw(scope);
            self.upstreams.clone()
        }
    }

    fn query(id: u16, name: &str, rtype: RecordType) -> Vec<u8> {
        let mut msg = Message::new();
        msg.set_id(id).set_recursion_desired(true);
        msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        msg.to_vec().unwrap()
    }

    /// The reply to `query` from the server at `server` over UDP.
    async fn ask_udp(server: SocketAddr, query: &[u8]) -> Message {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(query, server).await.unwrap();
        let mut buf = vec![0u8; MAX_MESSAGE];
        let len = timeout(Duration::from_secs(10), socket.recv(&mut buf))
            .await
            .expect("no reply")
            .unwrap();
        Message::from_vec(&buf[..len]).unwrap()
    }

    /// A UDP (and, with `tcp_full`, TCP on the same port) upstream answering every query
    /// with one A record; over UDP with only the TC flag when `tcp_full` is set.
    async fn fake_upstream(tcp_full: bool) -> (SocketAddr, JoinSet<()>) {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        if tcp_full {
            let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
            tasks.spawn(async move {
                loop {
                    let (mut stream, _) = tcp.accept().await.unwrap();
                    let query = read_framed(&mut stream, TCP_IDLE).await.unwrap().unwrap();
                    let reply = upstream_reply(&query, false);
                    write_framed(&mut stream, &reply).await.unwrap();
                }
            });
        }
        tasks.spawn(async move {
            let mut buf = vec![0u8; MAX_MESSAGE];
            loop {
                let (len, peer) = udp.recv_from(&mut buf).await.unwrap();
                let reply = upstream_reply(&buf[..len], tcp_full);
                udp.send_to(&reply, peer).await.unwrap();
            }
        });
        (addr, tasks)
    }

    fn upstream_reply(query: &[u8], truncated: bool) -> Vec<u8> {
        let request = Message::from_vec(query).unwrap();
        let mut reply = response(&request, ResponseCode::NoError);
        if truncated {
            reply.set_truncated(true);
        } else {
            let name = request.queries()[0].name().clone();
            reply.add_answer(Record::from_rdata(name, 60, RData::A(A(UPSTREAM_ANSWER))));
        }
        reply.to_vec().unwrap()
    }

    /// A server on 127.0.0.1 ports; returns its address (UDP and TCP share the port).
    fn start(names: Arc<FakeNames>) -> (SocketAddr, Server) {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        // The TCP listener on the UDP socket's port, so both share one address.
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let server = serve(udp, tcp, SCOPE.to_owned(), names).unwrap();
        (SocketAddr::from(([127, 0, 0, 1], port)), server)
    }

    fn addresses(reply: &Message) -> Vec<Ipv4Addr> {
        reply
            .answers()
            .iter()
            .map(|r| match r.data() {
                RData::A(A(ip)) => *ip,
                other => panic!("not an A record: {other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn known_names_are_answered_locally() {
        let names = FakeNames::new(Vec::new());
        let (addr, _server) = start(Arc::clone(&names));

        let reply = ask_udp(addr, &query(0x1234, "WeB.", RecordType::A)).await;
        assert_eq!(reply.id(), 0x1234);
        assert_eq!(reply.message_type(), MessageType::Response);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert!(reply.recursion_available());
        assert!(reply.recursion_desired());
        assert_eq!(reply.queries().len(), 1);
        assert_eq!(reply.queries()[0].name().to_ascii(), "WeB.");
        assert_eq!(addresses(&reply), [WEB1, WEB2]);
        assert!(reply.answers().iter().all(|r| r.ttl() == TTL));

        let reply = ask_udp(addr, &query(7, "web.", RecordType::AAAA)).await;
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert!(reply.answers().is_empty());
        assert_eq!(reply.queries()[0].query_type(), RecordType::AAAA);

        let reply = ask_udp(addr, &query(8, "db.", RecordType::A)).await;
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert!(reply.answers().is_empty());

        let reply = ask_udp(addr, &query(9, "2.0.89.10.IN-ADDR.arpa.", RecordType::PTR)).await;
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(reply.answers().len(), 1);
        match reply.answers()[0].data() {
            RData::PTR(PTR(target)) => assert_eq!(target.to_ascii(), "web.mynet."),
            other => panic!("not a PTR record: {other:?}"),
        }
        assert!(names.scopes.lock().unwrap().iter().all(|s| s == SCOPE));
    }

    #[tokio::test]
    async fn unknown_names_are_forwarded_with_the_clients_id() {
        let (upstream, _upstream) = fake_upstream(false).await;
        // A closed port first: it refuses at once and the next upstream is asked.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (addr, _server) = start(FakeNames::new(vec![closed, upstream]));

        let reply = ask_udp(addr, &query(0xbeef, "example.org.", RecordType::A)).await;
        assert_eq!(reply.id(), 0xbeef);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(addresses(&reply), [UPSTREAM_ANSWER]);
        assert_eq!(
            reply.answers()[0].ttl(),
            60,
            "the upstream's reply is relayed as is"
        );

        // A PTR berth does not know goes upstream too.
        let reply = ask_udp(addr, &query(3, "9.9.89.10.in-addr.arpa.", RecordType::PTR)).await;
        assert_eq!(reply.id(), 3);
        assert_eq!(addresses(&reply), [UPSTREAM_ANSWER]);
    }

    #[tokio::test]
    async fn truncated_upstream_replies_are_retried_over_tcp() {
        let (upstream, _upstream) = fake_upstream(true).await;
        let (addr, _server) = start(FakeNames::new(vec![upstream]));
        let reply = ask_udp(addr, &query(0x4242, "big.example.", RecordType::A)).await;
        assert_eq!(reply.id(), 0x4242);
        assert!(!reply.truncated());
        assert_eq!(addresses(&reply), [UPSTREAM_ANSWER]);
    }

    #[tokio::test]
    async fn unknown_names_without_upstreams_fail() {
        let (addr, _server) = start(FakeNames::new(Vec::new()));
        let reply = ask_udp(addr, &query(77, "example.org.", RecordType::A)).await;
        assert_eq!(reply.id(), 77);
        assert_eq!(reply.response_code(), ResponseCode::ServFail);
        assert!(reply.recursion_available());
        assert_eq!(reply.queries()[0].name().to_ascii(), "example.org.");
    }

    #[tokio::test]
    async fn queries_are_answered_over_tcp() {
        let (addr, _server) = start(FakeNames::new(Vec::new()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        for id in [1, 2] {
            write_framed(&mut stream, &query(id, "web.", RecordType::A))
                .await
                .unwrap();
            let reply = read_framed(&mut stream, TCP_IDLE).await.unwrap().unwrap();
            let reply = Message::from_vec(&reply).unwrap();
            assert_eq!(reply.id(), id);
            assert_eq!(addresses(&reply), [WEB1, WEB2]);
        }
        // Garbage closes the connection.
        write_framed(&mut stream, b"\x00\x01garbage").await.unwrap();
        let closed = read_framed(&mut stream, TCP_IDLE).await;
        assert!(matches!(closed, Ok(None) | Err(_)), "{closed:?}");
    }

    #[tokio::test]
    async fn garbage_does_not_stop_the_server() {
        let (addr, _server) = start(FakeNames::new(Vec::new()));
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for garbage in [&b""[..], b"\x01", b"not a dns packet at all", &[0xff; 600]] {
            socket.send_to(garbage, addr).await.unwrap();
        }
        // A response sent to the server is dropped too rather than answered.
        let mut stray = Message::from_vec(&query(5, "web.", RecordType::A)).unwrap();
        stray.set_message_type(MessageType::Response);
        socket
            .send_to(&stray.to_vec().unwrap(), addr)
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let nothing = timeout(Duration::from_millis(300), socket.recv(&mut buf)).await;
        assert!(nothing.is_err(), "garbage was answered");

        let reply = ask_udp(addr, &query(6, "web.", RecordType::A)).await;
        assert_eq!(reply.id(), 6);
        assert_eq!(addresses(&reply), [WEB1, WEB2]);
    }

    #[tokio::test]
    async fn a_dropped_server_stops_answering() {
        let (addr, server) = start(FakeNames::new(Vec::new()));
        drop(server);
        // The aborted tasks are dropped, closing the sockets, when the runtime next runs them.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the listener is still open");
    }

    #[test]
    fn reverse_names_are_parsed_strictly() {
        assert_eq!(
            reverse_ipv4("4.3.2.1.in-addr.arpa"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(reverse_ipv4("3.2.1.in-addr.arpa"), None);
        assert_eq!(reverse_ipv4("5.4.3.2.1.in-addr.arpa"), None);
        assert_eq!(reverse_ipv4("256.3.2.1.in-addr.arpa"), None);
        assert_eq!(reverse_ipv4("+4.3.2.1.in-addr.arpa"), None);
        assert_eq!(reverse_ipv4("4.3.2.1.ip6.arpa"), None);
    }

    #[test]
    fn long_local_answers_are_truncated_for_udp() {
        let request = Message::from_vec(&query(1, "many.", RecordType::A)).unwrap();
        let mut reply = response(&request, ResponseCode::NoError);
        let name = Name::from_ascii("many.").unwrap();
        for i in 0..100u8 {
            let ip = Ipv4Addr::new(10, 0, 0, i);
            reply.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(ip))));
        }
        let udp = Message::from_vec(&encode(reply.clone(), UDP_MIN_PAYLOAD).unwrap()).unwrap();
        assert!(udp.truncated());
        assert!(udp.answers().is_empty());
        let tcp = Message::from_vec(&encode(reply, MAX_MESSAGE).unwrap()).unwrap();
        assert!(!tcp.truncated());
        assert_eq!(tcp.answers().len(), 100);
    }

    /// A named network namespace, deleted on drop.
    struct TestNetns(String);

    impl TestNetns {
        fn create() -> Self {
            let name = format!("berth-dnstest-{}", std::process::id());
            ip(&["netns", "add", &name]);
            let netns = TestNetns(name);
            ip(&["-n", &netns.0, "link", "set", "lo", "up"]);
            netns
        }

        fn open(&self) -> File {
            File::open(format!("/run/netns/{}", self.0)).unwrap()
        }
    }

    impl Drop for TestNetns {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }

    fn ip(args: &[&str]) {
        let status = Command::new("ip").args(args).status().unwrap();
        assert!(status.success(), "ip {args:?}: {status}");
    }

    /// Send `query` to 127.0.0.11:53 from inside `netns` (on a thread of its own) and
    /// return the reply.
    async fn ask_in_netns(netns: File, query: Vec<u8>) -> Message {
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let asked = (|| -> io::Result<Vec<u8>> {
                setns(&netns, CloneFlags::CLONE_NEWNET)?;
                let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
                socket.set_read_timeout(Some(Duration::from_secs(10)))?;
                socket.send_to(&query, LISTEN)?;
                let mut buf = vec![0u8; MAX_MESSAGE];
                let len = socket.recv(&mut buf)?;
                buf.truncate(len);
                Ok(buf)
            })();
            let _ = tx.send(asked);
        });
        let reply = rx.await.unwrap().unwrap();
        Message::from_vec(&reply).unwrap()
    }

    #[tokio::test]
    async fn a_server_bound_in_a_namespace_answers_there_and_forwards_from_the_host() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let netns = TestNetns::create();
        let (udp, tcp) = bind_in_netns(&netns.open()).unwrap();
        assert_eq!(udp.local_addr().unwrap(), SocketAddr::V4(LISTEN));
        assert_eq!(tcp.local_addr().unwrap(), SocketAddr::V4(LISTEN));
        // The upstream is on the host's loopback, which the namespace cannot reach.
        let (upstream, _upstream) = fake_upstream(false).await;
        let _server = serve(udp, tcp, SCOPE.to_owned(), FakeNames::new(vec![upstream])).unwrap();

        let reply = ask_in_netns(netns.open(), query(0x0b0b, "Web.", RecordType::A)).await;
        assert_eq!(reply.id(), 0x0b0b);
        assert_eq!(addresses(&reply), [WEB1, WEB2]);

        let reply = ask_in_netns(netns.open(), query(0x0c0c, "example.org.", RecordType::A)).await;
        assert_eq!(reply.id(), 0x0c0c);
        assert_eq!(addresses(&reply), [UPSTREAM_ANSWER]);
    }
}
