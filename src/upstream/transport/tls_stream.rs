//! TLS on a connection with rustls' unbuffered API: records are read into a buffer lent only
//! while an answer comes in, and deframed and decrypted where they lie.
//!
//! rustls' buffered connection keeps a record buffer of its own in every connection. It
//! shrinks that buffer to 4 KB whenever it is empty (every idle poller, so that a thousand
//! idle connections stay small), and grows it again at most 4 KB per read while an answer
//! comes in: each step zero-fills the new part, may reallocate, and copies the bytes in from
//! the socket's buffer. An answer of 56 KB took about a dozen such steps, and the static build
//! paid musl's allocator for every reallocation. Here the socket is read straight into one
//! [`LENT`] buffer from the shared pool (one or two system calls per answer), rustls works in
//! place in it, and the buffer goes back to the pool before the next request, so an idle
//! connection holds no receive buffer at all.
//!
//! What rustls 0.23 still does its own way: each record's plaintext comes out in a vector of
//! its own, which [`TlsStream::read`] copies into the caller's buffer (what does not fit waits
//! in `spill`).
//!
//! The stream is generic over what carries the bytes: our own TCP socket, or ureq's tunnel
//! through an HTTP CONNECT proxy (`connect.rs`).

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus};

use super::buffers::{BufferPool, LENT, LentWindow};

/// Most bytes held for one record or handshake message that is not complete yet. A record is
/// at most 16 KB plus its overhead; a handshake message (a certificate chain) up to the 64 KB
/// rustls accepts. Beyond this the peer is not speaking TLS as we know it.
const MAX_INCOMING: usize = 4 * LENT;

/// A TLS client connection over `S` (see the module documentation).
pub struct TlsStream<S> {
    conn: UnbufferedClientConnection,
    /// What carries the TLS records.
    pub sock: S,
    /// Received bytes not processed yet, in a buffer lent while bytes are expected or held.
    incoming: LentWindow,
    /// Plaintext already decrypted that the caller has not taken yet: `spill[spill_at..]`.
    spill: Vec<u8>,
    spill_at: usize,
    /// TLS records to send (handshake messages, an encrypted request, alerts).
    outgoing: Vec<u8>,
    /// The peer's close_notify was seen: the end of its data.
    closed: bool,
}

/// What one round of rustls' state machine did.
enum Step {
    /// Plaintext: this many bytes were put in the caller's buffer (the rest, if any, is in
    /// `spill`).
    Read(usize),
    /// The caller's data was encrypted and sent.
    Wrote,
    /// Something was sent or processed; go on.
    Again,
    /// Handshake complete and nothing to read in what has arrived: more input is needed
    /// to read, and data can be written.
    Writable,
    /// The handshake needs more input.
    Blocked,
    /// The peer closed the connection cleanly (close_notify).
    Closed,
}

impl<S: Read + Write> TlsStream<S> {
    /// A connection that has not started its handshake.
    pub fn new(conn: UnbufferedClientConnection, sock: S, pool: Arc<BufferPool>) -> TlsStream<S> {
        TlsStream {
            conn,
            sock,
            incoming: LentWindow::new(pool),
            spill: Vec::new(),
            spill_at: 0,
            outgoing: Vec::new(),
            closed: false,
        }
    }

    /// Runs the handshake to the end. An error from rustls comes back inside the
    /// `io::Error` (`InvalidData`), as from its buffered connection.
    pub fn handshake(&mut self) -> io::Result<()> {
        loop {
            match self.step(&mut [], &[])? {
                Step::Writable => break,
                Step::Blocked => {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed in the TLS handshake",
                        ));
                    }
                }
                Step::Closed => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "close_notify in the TLS handshake"));
                }
                Step::Read(_) | Step::Wrote | Step::Again => {}
            }
        }
        self.release();
        Ok(())
    }

    /// Received bytes or plaintext are waiting here (the socket may be empty while they are).
    pub fn has_buffered(&self) -> bool {
        !self.incoming.is_empty() || self.spill_at < self.spill.len()
    }

    /// Gives the receive buffer back to the pool when it holds nothing (after an answer has
    /// been read, before the next request).
    pub fn release(&mut self) {
        self.incoming.give_back();
    }

    /// Whether an idle connection can take another request: nothing is left over, the peer
    /// has not closed, and `sock_open` (the socket's own check) agrees.
    pub fn is_open(&mut self, sock_open: impl FnOnce(&mut S) -> bool) -> bool {
        !self.closed && !self.has_buffered() && sock_open(&mut self.sock)
    }

    /// One round of rustls' state machine over the bytes received so far. Plaintext goes to
    /// `out` (what does not fit, to `spill`); `data`, if any, is encrypted and sent once the
    /// connection can send application data.
    fn step(&mut self, out: &mut [u8], data: &[u8]) -> io::Result<Step> {
        // rustls copies each record's plaintext into a vector of its exact length; the
        // allocator cache serves it the block the last record's vector left.
        let (conn, incoming) = (&mut self.conn, &mut self.incoming);
        let UnbufferedStatus { discard, state } =
            crate::util::thread_cache::records(move || conn.process_tls_records(incoming.data_mut()));
        let step = match state.map_err(tls_error)? {
            ConnectionState::ReadTraffic(mut traffic) => {
                let mut put = 0;
                if let Some(record) = traffic.next_record() {
                    let payload = record.map_err(tls_error)?.payload;
                    if self.spill_at == self.spill.len() {
                        put = payload.len().min(out.len());
                        out[..put].copy_from_slice(&payload[..put]);
                        self.spill.clear();
                        self.spill_at = 0;
                    }
                    self.spill.extend_from_slice(&payload[put..]);
                }
                Step::Read(put)
            }
            ConnectionState::EncodeTlsData(mut encode) => {
                let needed = |e: &EncodeError| match e {
                    EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Some(*required_size),
                    _ => None,
                };
                append_sized(&mut self.outgoing, 512, |buf| encode.encode(buf), needed)?;
                Step::Again
            }
            ConnectionState::TransmitTlsData(transmit) => {
                send(&mut self.sock, &mut self.outgoing)?;
                transmit.done();
                Step::Again
            }
            ConnectionState::WriteTraffic(mut traffic) => {
                if data.is_empty() {
                    Step::Writable
                } else {
                    // TLS adds at most 29 bytes to each record of up to 16 KB.
                    let guess = data.len() + 64 * (data.len() / 16384 + 1);
                    let needed = |e: &EncryptError| match e {
                        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => Some(*required_size),
                        _ => None,
                    };
                    append_sized(&mut self.outgoing, guess, |buf| traffic.encrypt(data, buf), needed)?;
                    send(&mut self.sock, &mut self.outgoing)?;
                    Step::Wrote
                }
            }
            ConnectionState::BlockedHandshake => Step::Blocked,
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                self.closed = true;
                Step::Closed
            }
            _ => return Err(io::Error::other("TLS: a connection state a client does not expect")),
        };
        self.incoming.consume(discard);
        Ok(step)
    }

    /// Reads more of the socket into the receive buffer (see [`LentWindow::room`]; up to
    /// [`MAX_INCOMING`] for a long message). 0: end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        let room = self.incoming.room(MAX_INCOMING);
        if room.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TLS: a record or handshake message longer than {MAX_INCOMING} bytes"),
            ));
        }
        let n = self.sock.read(room)?;
        self.incoming.appended(n);
        Ok(n)
    }

    /// Plaintext decrypted earlier and not taken yet, into `out`.
    fn take_spill(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.spill.len() - self.spill_at);
        out[..n].copy_from_slice(&self.spill[self.spill_at..self.spill_at + n]);
        self.spill_at += n;
        if self.spill_at == self.spill.len() {
            // Rare (a record larger than the caller's room): not kept for the next answer.
            self.spill = Vec::new();
            self.spill_at = 0;
        }
        n
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    /// Plaintext of the next record(s). `Ok(0)` only after the peer's close_notify; a
    /// connection that ends without one is an `UnexpectedEof` error, as in rustls' own
    /// reader, so a cut answer is never taken for a whole one.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.spill_at < self.spill.len() {
                return Ok(self.take_spill(out));
            }
            if self.closed {
                return Ok(0);
            }
            match self.step(out, &[])? {
                Step::Read(0) | Step::Again | Step::Wrote => {}
                Step::Read(n) => return Ok(n),
                Step::Writable | Step::Blocked => {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed connection without sending TLS close_notify",
                        ));
                    }
                }
                Step::Closed => return Ok(0),
            }
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    /// Encrypts and sends all of `data`. Plaintext that arrives first (nothing should, before
    /// a request) waits in `spill` for the next read.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        loop {
            match self.step(&mut [], data)? {
                Step::Wrote => return Ok(data.len()),
                Step::Read(_) | Step::Again | Step::Writable => {}
                Step::Blocked => {
                    if self.fill()? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Step::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// rustls' error, kept inside the `io::Error` so callers can tell an untrusted certificate.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Sends all of `buf` and empties it.
fn send<S: Write>(sock: &mut S, buf: &mut Vec<u8>) -> io::Result<()> {
    sock.write_all(buf)?;
    sock.flush()?;
    buf.clear();
    Ok(())
}

/// Appends what `write` puts in the room it is given: `guess` bytes first, then as many as
/// it says it needs (`needed` reads that from its error). Other errors become `io::Error`s.
fn append_sized<E: std::fmt::Display>(
    buf: &mut Vec<u8>,
    guess: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    needed: impl Fn(&E) -> Option<usize>,
) -> io::Result<()> {
    let at = buf.len();
    buf.resize(at + guess, 0);
    for _ in 0..2 {
        match write(&mut buf[at..]) {
            Ok(n) => {
                buf.truncate(at + n);
                return Ok(());
            }
            Err(e) => match needed(&e) {
                Some(required) => buf.resize(at + required, 0),
                None => {
                    buf.truncate(at);
                    return Err(io::Error::other(format!("TLS: {e}")));
                }
            },
        }
    }
    buf.truncate(at);
    Err(io::Error::other("TLS: the output buffer kept growing"))
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    use fake_fastly::TlsIdentity;
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    use rustls::{RootCertStore, ServerConnection, StreamOwned};

    use super::*;
    use crate::upstream::transport::tls::client_config;

    type Server = StreamOwned<ServerConnection, TcpStream>;

    /// A TLS server on 127.0.0.1 for `names` running `serve` on its one connection, and a
    /// client connected to it with the handshake done.
    fn pair(
        names: &[&str],
        serve: impl FnOnce(&mut Server) + Send + 'static,
    ) -> (TlsStream<TcpStream>, thread::JoinHandle<()>) {
        let id = TlsIdentity::generate("tls_stream test CA", names).expect("identity");
        let config = id.server_config().expect("server config");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = thread::spawn(move || {
            let (tcp, _) = listener.accept().expect("accept");
            let mut s = StreamOwned::new(ServerConnection::new(config).expect("server conn"), tcp);
            serve(&mut s);
        });
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(id.ca_pem.as_bytes()).expect("ca");
        roots.add(ca).expect("root");
        let conn =
            UnbufferedClientConnection::new(client_config(roots), ServerName::try_from("127.0.0.1").expect("name"))
                .expect("client conn");
        let mut client =
            TlsStream::new(conn, TcpStream::connect(addr).expect("connect"), Arc::new(BufferPool::default()));
        client.handshake().expect("handshake");
        (client, server)
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// Reads until `Ok(0)` or an error, `chunk` bytes at most per read.
    fn read_all(c: &mut TlsStream<TcpStream>, chunk: usize) -> (Vec<u8>, io::Result<()>) {
        let mut got = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            match c.read(&mut buf) {
                Ok(0) => return (got, Ok(())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return (got, Err(e)),
            }
        }
    }

    #[test]
    fn requests_and_answers_of_many_records_arrive_whole_through_small_reads() {
        let (mut c, server) = pair(&["127.0.0.1"], |s| {
            for round in 0..3 {
                let mut req = [0u8; 7];
                s.read_exact(&mut req).expect("request");
                assert_eq!(&req, format!("GET {round}\r\n").as_bytes());
                // Seven records, the last one short.
                s.write_all(&pattern(100_000 + round)).expect("answer");
                s.flush().expect("flush");
            }
            let mut bye = [0u8; 4];
            s.read_exact(&mut bye).expect("bye");
            s.conn.send_close_notify();
            s.conn.complete_io(&mut s.sock).expect("close_notify");
        });
        for round in 0..3 {
            c.write_all(format!("GET {round}\r\n").as_bytes()).expect("request");
            // Reads smaller than a record: the rest of each record waits in `spill`.
            let mut got = vec![0; 100_000 + round];
            let mut at = 0;
            let mut buf = [0u8; 1000];
            while at < got.len() {
                let n = c.read(&mut buf[..(got.len() - at).min(1000)]).expect("read");
                assert!(n > 0);
                got[at..at + n].copy_from_slice(&buf[..n]);
                at += n;
            }
            assert_eq!(got, pattern(100_000 + round), "round {round}");
            assert!(
                !c.has_buffered(),
                "round {round}: {} received, {}/{} spilled",
                c.incoming.data().len(),
                c.spill_at,
                c.spill.len()
            );
            c.release();
            assert!(!c.incoming.holds_buffer(), "the receive buffer went back to the pool");
        }
        c.write_all(b"BYE!").expect("bye");
        // The clean end: `Ok(0)`, and again.
        let (rest, end) = read_all(&mut c, 4096);
        assert!(rest.is_empty() && end.is_ok());
        assert_eq!(c.read(&mut [0u8; 10]).expect("after the end"), 0);
        server.join().expect("server");
    }

    #[test]
    fn a_connection_cut_without_close_notify_is_an_error_after_the_bytes_that_came() {
        let (mut c, server) = pair(&["127.0.0.1"], |s| {
            s.write_all(&pattern(20_000)).expect("answer");
            s.flush().expect("flush");
            // Dropped: the TCP connection closes without a close_notify.
        });
        let (got, end) = read_all(&mut c, 32 * 1024);
        server.join().expect("server");
        assert_eq!(got, pattern(20_000));
        assert_eq!(end.expect_err("a cut stream").kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_certificate_flight_larger_than_a_lent_buffer_grows_the_buffer_for_the_handshake() {
        // About 1,500 names make a certificate of ~40 KB: more than `LENT` in one handshake
        // message.
        let names: Vec<String> = (0..1500).map(|i| format!("host-{i:04}.example.test")).collect();
        let mut refs: Vec<&str> = vec!["127.0.0.1"];
        refs.extend(names.iter().map(String::as_str));
        let (mut c, server) = pair(&refs, |s| {
            s.write_all(b"after a large flight").expect("answer");
            s.conn.send_close_notify();
            s.conn.complete_io(&mut s.sock).expect("close_notify");
        });
        let (got, end) = read_all(&mut c, 64);
        server.join().expect("server");
        assert_eq!(got, b"after a large flight");
        assert!(end.is_ok());
    }
}
