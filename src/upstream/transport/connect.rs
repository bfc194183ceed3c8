//! How a connection to a Fastly API is opened, and what each one keeps while it lives.
//!
//! A poller holds one pooled connection for the life of the process, so whatever a
//! connection keeps is paid a thousand times at Scale A. ureq's own rustls step stacks TLS on
//! its TCP transport: two transports, two sets of buffers (the TCP one only copies bytes
//! through to rustls), a socket-timeout system call before every read, and the handshake on
//! the caller's stack. Measured at 1,000 services that cost 53.9 kB per connection over plain
//! HTTP (glibc build), part of it certificate verification's frames, which stayed resident as
//! touched stack pages of every poller.
//!
//! So [`HttpConnector`] opens the TCP connection itself and, for HTTPS, puts rustls directly
//! on the socket ([`Socket::Direct`]); all of the opening runs on a short-lived thread whose
//! stack is returned when it ends ([`off_stack`]). When an HTTP CONNECT proxy applies it uses
//! ureq's CONNECT step and TLS over that tunnel ([`Socket::Chained`]), rare enough not to
//! matter for memory. Real-time answers are read in turns (`gate.rs`).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use ureq::Timeout;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, NextTimeout, ShutdownHandle, Transport,
    TransportAdapter,
};

use super::buffers::{BufferPool, LentBuffers};
use super::gate::{Gate, Turns};
use super::tls::Untrusted;
use super::tls_stream::TlsStream;

/// Stack of the thread that opens a connection: certificate path building and signature
/// checks are the deepest code a connection runs, and pollers ran them on stacks of this size
/// before. (glibc hands an exited thread's stack only to a thread of the same size or smaller.)
const HANDSHAKE_STACK: usize = 128 * 1024;

/// The connector of every API client: opens plain or TLS connections with the
/// process-wide rustls configuration, directly or through an HTTP CONNECT proxy.
///
/// Replaces ureq's whole default chain rather than adding a step to it: each step of a chain
/// is a nested generic frame of several kilobytes on the caller's stack, and all of the
/// opening (proxy, TCP, TLS) runs on a short-lived thread anyway (see [`off_stack`]).
#[derive(Debug)]
pub struct HttpConnector {
    tls: Arc<ClientConfig>,
    handshakes: Arc<Gate>,
    turns: Option<Arc<Turns>>,
    buffers: Arc<BufferPool>,
}

impl HttpConnector {
    /// A connector whose TLS connections trust what `tls` trusts and handshake in turns of
    /// `handshakes`, and whose direct connections read each answer in a turn of `turns`, if
    /// given (the client's own handle on the shared gate). Read buffers are lent from
    /// `buffers` (see `buffers.rs`).
    pub fn new(
        tls: Arc<ClientConfig>,
        handshakes: Arc<Gate>,
        turns: Option<Arc<Turns>>,
        buffers: Arc<BufferPool>,
    ) -> HttpConnector {
        HttpConnector { tls, handshakes, turns, buffers }
    }

    fn open(&self, details: &ConnectionDetails) -> Result<Connection, ureq::Error> {
        let started = Instant::now();
        let buffers = || LentBuffers::new(self.buffers.clone());
        // ureq's CONNECT step decides whether a proxy applies (HTTPS_PROXY, NO_PROXY...) and
        // opens the tunnel, reaching the proxy itself through this connector.
        if let Some(tunnel) = ConnectProxyConnector::default().connect(details, None::<()>)? {
            let tunnel = match tunnel {
                Either::A(()) => return Err(ureq::Error::ConnectionFailed),
                Either::B(t) => t,
            };
            // No turns through a proxy: readiness cannot be seen through its tunnel.
            if !details.needs_tls() {
                return Ok(Connection::new(buffers(), Kind::Proxied(tunnel), None));
            }
            let sock = Socket::Chained(TransportAdapter::new(tunnel, details.current_time.clone()));
            let stream = self.handshake(details, sock, started)?;
            return Ok(Connection::new(buffers(), Kind::Tls(stream), None));
        }
        let stream = Arc::new(tcp_connect(details)?);
        (details.register_shutdown)(Arc::downgrade(&stream) as Weak<dyn ShutdownHandle>)?;
        let direct = Direct::new(stream);
        let turns = self.turns.clone();
        if !details.needs_tls() {
            return Ok(Connection::new(buffers(), Kind::Plain(direct), turns));
        }
        let stream = self.handshake(details, Socket::Direct(direct), started)?;
        Ok(Connection::new(buffers(), Kind::Tls(stream), turns))
    }

    /// The TLS handshake, in one of the process's handshake slots. Waiting for a slot comes
    /// out of the connection's own budget (what `started` left of it): a connection that gets
    /// none in time fails with a timeout, like any other transport error, and is retried.
    fn handshake(
        &self,
        details: &ConnectionDetails,
        mut sock: Socket,
        started: Instant,
    ) -> Result<TlsStream<Socket>, ureq::Error> {
        let authority = details.uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let host = details.uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|_| ureq::Error::Tls("invalid server name"))?;
        sock.set_timeout(details.timeout);
        let left = details.timeout.not_zero().map(|budget| budget.saturating_sub(started.elapsed()));
        let _slot = self.handshakes.enter(left).map_err(|_| ureq::Error::Timeout(details.timeout.reason))?;
        // Debug builds: a panic inside the slot, on purpose (real-time connections only: their
        // pollers catch it), so tests can show the slot comes back.
        #[cfg(debug_assertions)]
        if self.turns.is_some() {
            crate::util::faults::hit("handshake");
        }
        let conn = UnbufferedClientConnection::new(self.tls.clone(), name).map_err(ureq::Error::Rustls)?;
        let mut stream = TlsStream::new(conn, sock, self.buffers.clone());
        stream.handshake().map_err(|e| handshake_error(e, authority))?;
        Ok(stream)
    }
}

impl Connector<()> for HttpConnector {
    type Out = Connection;

    fn connect(&self, details: &ConnectionDetails, _: Option<()>) -> Result<Option<Connection>, ureq::Error> {
        off_stack(|| self.open(details)).map(Some)
    }
}

/// Runs `work` on a short-lived thread and waits for it, so that the caller's stack never
/// grows to what `work` needs. Used for the TLS handshake: building the ClientHello and
/// verifying the certificate chain are the deepest code a connection runs, and a poller's
/// touched stack pages stay resident for its whole life. If no thread can be started, runs
/// `work` here.
fn off_stack<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let mut work = Some(work);
    let on_thread = thread::scope(|scope| {
        let job = &mut work;
        let worker = thread::Builder::new()
            .name("tls-handshake".into())
            .stack_size(HANDSHAKE_STACK)
            .spawn_scoped(scope, move || crate::util::panics::catch(|| job.take().map(|w| w())));
        worker.ok().map(|handle| handle.join())
    });
    match on_thread {
        Some(Ok(Ok(Some(done)))) => done,
        // A panic in `work` goes on in the caller, where the poller's handler catches it and
        // logs where it happened.
        Some(Ok(Err(caught))) => crate::util::panics::resume(caught),
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        // No thread: `work` was not taken.
        _ => match work.take() {
            Some(w) => w(),
            None => unreachable!("the worker either ran the work or was never started"),
        },
    }
}

/// A failed handshake as a ureq error; a certificate we do not trust becomes [`Untrusted`]
/// so the client can name the host in one log line.
fn handshake_error(e: io::Error, server: String) -> ureq::Error {
    let trust = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).is_some_and(|r| {
        matches!(r, rustls::Error::InvalidCertificate(_) | rustls::Error::InvalidCertRevocationList(_))
    });
    if trust {
        let reason = e.get_ref().map(|r| r.to_string()).unwrap_or_default();
        return ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidData, Untrusted { server, reason }));
    }
    ureq::Error::from(e)
}

/// ureq's timeout error, carried through `std::io` (ureq unwraps it again).
fn timed_out(reason: Timeout) -> io::Error {
    io::Error::other(ureq::Error::Timeout(reason))
}

/// Connects to the first resolved address that answers, sharing the connect budget among
/// them as ureq does (half of what is left to each next address), so a host whose first
/// address has no route still connects within the timeout.
fn tcp_connect(details: &ConnectionDetails) -> Result<TcpStream, ureq::Error> {
    let started = Instant::now();
    let budget = details.timeout.not_zero().map(|d| *d);
    let mut last = None;
    let count = details.addrs.len();
    for (i, addr) in details.addrs.iter().enumerate() {
        let left = budget.map(|b| b.saturating_sub(started.elapsed()));
        if left == Some(Duration::ZERO) {
            return Err(ureq::Error::Timeout(details.timeout.reason));
        }
        // The last address gets all that is left; the others half of it.
        let this = left.map(|l| if i + 1 == count { l } else { (l / 2).max(Duration::from_millis(10)) });
        match connect_one(*addr, this) {
            Ok(stream) => {
                if details.config.no_delay() {
                    stream.set_nodelay(true)?;
                }
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
            ureq::Error::Timeout(Timeout::Connect)
        }
        Some(e) => ureq::Error::Io(e),
        None => ureq::Error::HostNotFound,
    })
}

fn connect_one(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
    match timeout {
        Some(t) => TcpStream::connect_timeout(&addr, t),
        None => TcpStream::connect(addr),
    }
}

/// What rustls reads from and writes to.
pub enum Socket {
    /// Our own TCP connection: rustls reads the socket directly.
    Direct(Direct),
    /// Through ureq's chain (a CONNECT proxy): bytes pass through its transport's buffers.
    Chained(TransportAdapter),
}

impl Socket {
    /// Applies ureq's timeout for the next operation (the rest of the request's budget).
    fn set_timeout(&mut self, timeout: NextTimeout) {
        match self {
            Socket::Direct(d) => d.set_timeout(timeout),
            Socket::Chained(a) => a.set_timeout(timeout),
        }
    }

    fn is_open(&mut self) -> bool {
        match self {
            Socket::Direct(d) => d.is_open(),
            Socket::Chained(a) => a.get_mut().is_open(),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Direct(d) => d.io(false, |mut s| s.read(buf)),
            Socket::Chained(a) => a.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Direct(d) => d.io(true, |mut s| s.write(buf)),
            Socket::Chained(a) => a.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Direct(_) => Ok(()),
            Socket::Chained(a) => a.flush(),
        }
    }
}

/// A TCP socket with ureq's deadline applied to every read and write.
pub struct Direct {
    /// Shared (weakly) with the agent's shutdown handle.
    stream: Arc<TcpStream>,
    /// ureq's budget for the current operation, and when it was given.
    timeout: NextTimeout,
    set_at: Instant,
    /// The socket's receive and send timeouts as last set (`None`: none).
    applied: [Option<Duration>; 2],
}

impl Direct {
    fn new(stream: Arc<TcpStream>) -> Direct {
        Direct { stream, timeout: NextTimeout::default(), set_at: Instant::now(), applied: [None, None] }
    }

    fn set_timeout(&mut self, timeout: NextTimeout) {
        self.timeout = timeout;
        self.set_at = Instant::now();
    }

    /// Runs one blocking read (or write) within what is left of ureq's budget; running out
    /// becomes ureq's timeout error, as from its own TCP transport.
    ///
    /// The socket timeout is changed only when it is far from the budget left: more than an
    /// eighth above it (a read could overrun the deadline by more than that) or below half of
    /// it (reads would wake up for nothing). A read that times out before the deadline is
    /// simply retried. Setting it exactly before every read, as ureq does, cost one system
    /// call per read: a third of all the exporter's system calls at Scale A.
    fn io(&mut self, write: bool, mut op: impl FnMut(&TcpStream) -> io::Result<usize>) -> io::Result<usize> {
        let timeout = if write { self.timeout.for_write() } else { self.timeout.for_read() };
        loop {
            let left = match timeout.not_zero() {
                None => None,
                Some(budget) => match budget.checked_sub(self.set_at.elapsed()) {
                    Some(left) if !timeout.after.is_zero() && !left.is_zero() => Some(left),
                    _ => return Err(timed_out(timeout.reason)),
                },
            };
            let applied = &mut self.applied[usize::from(write)];
            let stale = match (left, *applied) {
                (None, None) => false,
                (Some(l), Some(a)) => a > l + l / 8 || a < l / 2,
                _ => true,
            };
            if stale {
                if write { self.stream.set_write_timeout(left) } else { self.stream.set_read_timeout(left) }?;
                *applied = left;
            }
            match op(&self.stream) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Early (the socket timeout was shorter than the budget): try again.
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
                other => return other,
            }
        }
    }

    /// Whether an idle pooled connection can be reused: nothing arrived on it while idle
    /// (end of stream, a reset or stray bytes all mean no). One non-blocking peek.
    fn is_open(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        let mut one = 0u8;
        // SAFETY: a valid socket descriptor and a one-byte buffer that outlives the call.
        let n = unsafe {
            libc::recv(self.stream.as_raw_fd(), (&raw mut one).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        };
        n < 0 && matches!(io::Error::last_os_error().kind(), io::ErrorKind::WouldBlock)
    }
}

/// An open connection as a ureq transport.
pub struct Connection {
    /// ureq's buffers (unused for [`Kind::Proxied`], whose transport has its own).
    buffers: LentBuffers,
    kind: Kind,
    /// Answers are read in turns (see `gate.rs`): the client's handle.
    turns: Option<Arc<Turns>>,
    /// A request went out and nothing of its answer has been read yet.
    awaiting: bool,
}

/// What carries the bytes.
// TLS, the large variant, is the common case, and ureq boxes the whole connection once
// already; boxing the TLS state again would only add an allocation and a pointer hop per read.
#[allow(clippy::large_enum_variant)]
pub enum Kind {
    /// TLS, on our own socket or through a proxy tunnel.
    Tls(TlsStream<Socket>),
    /// Plain HTTP on our own socket.
    Plain(Direct),
    /// Plain HTTP through a proxy: ureq's tunnel transport as it is.
    Proxied(Box<dyn Transport>),
}

impl Connection {
    fn new(buffers: LentBuffers, kind: Kind, turns: Option<Arc<Turns>>) -> Connection {
        Connection { buffers, kind, turns, awaiting: false }
    }

    /// Before the first read of an answer: waits until it is in the socket, then for a turn,
    /// within what is left of the request's timeout (past it: ureq's timeout error).
    fn take_turn(&mut self) -> Result<(), ureq::Error> {
        let Some(turns) = &self.turns else {
            return Ok(());
        };
        let (direct, buffered) = match &mut self.kind {
            Kind::Tls(stream) => {
                let buffered = stream.has_buffered();
                match &mut stream.sock {
                    Socket::Direct(d) => (d, buffered),
                    Socket::Chained(_) => return Ok(()),
                }
            }
            Kind::Plain(d) => (d, false),
            Kind::Proxied(_) => return Ok(()),
        };
        // Bytes of the answer already received: no need to wait for the socket.
        if !buffered {
            let mut one = [0u8; 1];
            direct.io(false, |s| s.peek(&mut one))?;
        }
        let timeout = direct.timeout.for_read();
        let left = timeout.not_zero().map(|budget| budget.saturating_sub(direct.set_at.elapsed()));
        turns.take(left).map_err(|_| ureq::Error::Timeout(timeout.reason))?;
        Ok(())
    }
}

impl Drop for Connection {
    /// A connection dropped while its client holds a turn (ureq drops it on an error, or a
    /// panic unwinds through it) gives the turn back. A client uses one connection at a time,
    /// so the turn it holds is this connection's.
    fn drop(&mut self) {
        if let Some(turns) = &self.turns {
            turns.release();
        }
        crate::util::thread_cache::reading(false);
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Tls(stream) => match &stream.sock {
                Socket::Direct(_) => "tls",
                Socket::Chained(_) => "tls through a proxy",
            },
            Kind::Plain(_) => "plain",
            Kind::Proxied(_) => "plain through a proxy",
        };
        f.debug_tuple("Connection").field(&kind).finish()
    }
}

impl Transport for Connection {
    fn buffers(&mut self) -> &mut dyn Buffers {
        match &mut self.kind {
            Kind::Proxied(t) => t.buffers(),
            _ => &mut self.buffers,
        }
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        // A new request: whatever turn this client held for the last answer is over.
        if let Some(turns) = &self.turns {
            turns.release();
        }
        // The last answer has been read: its buffers go back until the next one arrives, and
        // so do the record buffers the allocator kept for this thread while it read.
        self.buffers.give_back();
        crate::util::thread_cache::reading(false);
        if let Kind::Tls(stream) = &mut self.kind {
            stream.release();
        }
        self.awaiting = true;
        match &mut self.kind {
            Kind::Tls(stream) => {
                stream.sock.set_timeout(timeout);
                stream.write_all(&self.buffers.output()[..amount])?;
            }
            Kind::Plain(socket) => {
                socket.set_timeout(timeout);
                let mut output = &self.buffers.output()[..amount];
                while !output.is_empty() {
                    match socket.io(true, |mut s| s.write(output))? {
                        0 => return Err(ureq::Error::Io(io::ErrorKind::WriteZero.into())),
                        n => output = &output[n..],
                    }
                }
            }
            Kind::Proxied(t) => t.transmit_output(amount, timeout)?,
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        match &mut self.kind {
            Kind::Tls(stream) => stream.sock.set_timeout(timeout),
            Kind::Plain(socket) => socket.set_timeout(timeout),
            Kind::Proxied(t) => return t.await_input(timeout),
        }
        if std::mem::take(&mut self.awaiting) {
            self.take_turn()?;
            // An answer is coming in: rustls's record buffers are reused until it is read.
            crate::util::thread_cache::reading(true);
        }
        let input = self.buffers.input_append_buf();
        let amount = match &mut self.kind {
            Kind::Tls(stream) => stream.read(input)?,
            Kind::Plain(socket) => socket.io(false, |mut s| s.read(input))?,
            Kind::Proxied(_) => 0,
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        match &mut self.kind {
            Kind::Tls(stream) => stream.is_open(Socket::is_open),
            Kind::Plain(socket) => socket.is_open(),
            Kind::Proxied(t) => t.is_open(),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self.kind, Kind::Tls(_))
    }
}
