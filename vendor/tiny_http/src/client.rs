use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{HTTPVersion, Method};
use crate::util::conn_table::{ConnEntry, Counters};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{Limits, Request};

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // (patch) size and time limits on request heads
    limits: Limits,

    // (patch) this connection's entry in the server's connection table, if it has one
    conn: Option<Arc<ConnEntry>>,

    // (patch) where refusals are counted
    counters: Arc<Counters>,
}

/// (patch) Reading state of one request head: bytes taken so far and the deadline, which
/// starts with the first byte of the request.
struct HeadBudget {
    line_limit: usize,
    header_bytes: usize,
    deadline: Option<Instant>,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// (patch) the request line is longer than `Limits::max_request_line`
    RequestLineTooLong,
    /// (patch) the header section is larger than `Limits::max_header_bytes`
    HeadersTooLarge(HTTPVersion),
    /// (patch) the head did not arrive within `Limits::header_timeout` of its first byte
    HeadTimeout,
    /// (patch) the body is larger than `Limits::max_body` (413), or of unknown length (411)
    BodyRefused(u16, HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Limits,
        conn: Option<Arc<ConnEntry>>,
        counters: Arc<Counters>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            limits,
            conn,
            counters,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// (patch) At most `budget.line_limit` bytes are buffered (`Ok(None)` past that), and the
    /// socket's receive timeout is set so the whole head arrives within the header timeout.
    fn read_next_line(&mut self, budget: &mut HeadBudget) -> IoResult<Option<AsciiString>> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;
        self.arm_timeout(budget)?;

        loop {
            let byte = self.next_header_source.by_ref().bytes().next();

            let byte = match byte {
                Some(b) => b?,
                None => return Err(IoError::new(ErrorKind::ConnectionAborted, "Unexpected EOF")),
            };
            match budget.deadline {
                None => {
                    if let Some(t) = self.limits.header_timeout {
                        budget.deadline = Some(Instant::now() + t);
                        self.arm_timeout(budget)?;
                    }
                }
                // A client trickling bytes in never lets a read time out: check the clock.
                Some(d) if Instant::now() >= d => {
                    return Err(IoError::new(ErrorKind::TimedOut, "request head deadline passed"));
                }
                Some(_) => {}
            }

            if byte == b'\n' && prev_byte_was_cr {
                buf.pop(); // removing the '\r'
                return AsciiString::from_ascii(buf)
                    .map(Some)
                    .map_err(|_| IoError::new(ErrorKind::InvalidInput, "Header is not in ASCII"));
            }

            prev_byte_was_cr = byte == b'\r';

            buf.push(byte);
            if buf.len() > budget.line_limit {
                return Ok(None);
            }
        }
    }

    /// (patch) Sets the receive timeout for the next read: the time left until the head's
    /// deadline once it started, the whole header timeout while waiting for its first byte.
    fn arm_timeout(&self, budget: &HeadBudget) -> IoResult<()> {
        let (Some(conn), Some(full)) = (&self.conn, self.limits.header_timeout) else {
            return Ok(());
        };
        let left = match budget.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => full,
        };
        if left.is_zero() {
            return Err(IoError::new(ErrorKind::TimedOut, "request head deadline passed"));
        }
        conn.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        Ok(())
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        let mut budget = HeadBudget {
            line_limit: self.limits.max_request_line.unwrap_or(usize::MAX),
            header_bytes: 0,
            deadline: None,
        };
        let timeout = |budget: &HeadBudget, e: IoError| match e.kind() {
            // A keep-alive connection that stays silent is closed without an answer; a head
            // that started but did not finish in time gets 408.
            ErrorKind::WouldBlock | ErrorKind::TimedOut if budget.deadline.is_some() => {
                ReadError::HeadTimeout
            }
            _ => ReadError::ReadIoError(e),
        };
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                let line = match self.read_next_line(&mut budget) {
                    Ok(Some(line)) => line,
                    Ok(None) => return Err(ReadError::RequestLineTooLong),
                    Err(e) => return Err(timeout(&budget, e)),
                };

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                let max_headers = self.limits.max_header_bytes.unwrap_or(usize::MAX);
                let max_count = self.limits.max_headers.unwrap_or(usize::MAX);
                loop {
                    budget.line_limit = max_headers.saturating_sub(budget.header_bytes);
                    let line = match self.read_next_line(&mut budget) {
                        Ok(Some(line)) => line,
                        Ok(None) => return Err(ReadError::HeadersTooLarge(version)),
                        Err(e) => return Err(timeout(&budget, e)),
                    };
                    budget.header_bytes += line.len() + 2;
                    if budget.header_bytes > max_headers {
                        return Err(ReadError::HeadersTooLarge(version));
                    }

                    if line.is_empty() {
                        break;
                    };
                    // (patch) Each header costs two allocations and a slot besides its bytes:
                    // thousands of tiny ones would hold far more memory than their bytes.
                    if headers.len() >= max_count {
                        return Err(ReadError::HeadersTooLarge(version));
                    }
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // (patch) A body the server will not take is refused before a byte of it is read.
        if let Some(max) = self.limits.max_body {
            let header = |name: &'static str| headers.iter().find(|h: &&crate::Header| h.field.equiv(name));
            if header("Transfer-Encoding").is_some() {
                return Err(ReadError::BodyRefused(411, version));
            }
            if let Some(h) = header("Content-Length") {
                match h.value.as_str().trim().parse::<usize>() {
                    Ok(n) if n > max => return Err(ReadError::BodyRefused(413, version)),
                    Ok(_) => {}
                    Err(_) => return Err(ReadError::WrongHeader(version)),
                }
            }
        }

        // building the writer for the request
        let close_after = Arc::new(AtomicBool::new(false));
        let writer =
            crate::request::ResponseWriter::new(self.sink.next().unwrap(), self.conn.clone(), close_after.clone());

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            *self.remote_addr.as_ref().unwrap(),
            data_source,
            writer,
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?
        .with_connection(self.conn.clone(), close_after);

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let rq = match self.read() {
                Err(ReadError::WrongRequestLine) => {
                    let writer = self.sink.next().unwrap();
                    let response = Response::new_empty(StatusCode(400));
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                        .ok();
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::WrongHeader(ver)) => {
                    let writer = self.sink.next().unwrap();
                    let response = Response::new_empty(StatusCode(400));
                    response.raw_print(writer, ver, &[], false, None).ok();
                    return None; // we don't know where the next request would start,
                                 // se we have to close
                }

                Err(ReadError::RequestLineTooLong) => {
                    self.counters.uri_too_long.fetch_add(1, Ordering::Relaxed);
                    self.refuse(414, HTTPVersion(1, 1));
                    return None; // (patch) the rest of the line is never read
                }

                Err(ReadError::HeadersTooLarge(ver)) => {
                    self.counters.headers_too_large.fetch_add(1, Ordering::Relaxed);
                    self.refuse(431, ver);
                    return None; // (patch) the rest of the head is never read
                }

                Err(ReadError::BodyRefused(status, ver)) => {
                    self.counters.body_too_large.fetch_add(1, Ordering::Relaxed);
                    self.refuse(status, ver);
                    return None; // (patch) the body is never read
                }

                Err(ReadError::HeadTimeout) => {
                    self.counters.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    self.refuse(408, HTTPVersion(1, 1));
                    return None;
                }

                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    // request timeout
                    let writer = self.sink.next().unwrap();
                    let response = Response::new_empty(StatusCode(408));
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                        .ok();
                    return None; // closing the connection
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    let writer = self.sink.next().unwrap();
                    let response = Response::new_empty(StatusCode(417));
                    response.raw_print(writer, ver, &[], true, None).ok();
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                let writer = self.sink.next().unwrap();
                let response = Response::from_string(
                    "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                )
                .with_status_code(StatusCode(505));
                response
                    .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                    .ok();
                continue;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

impl ClientConnection {
    /// (patch) Answers `status` with `Connection: close` and an empty body, for requests
    /// refused before they were read completely.
    fn refuse(&mut self, status: u16, version: HTTPVersion) {
        use crate::{Header, Response, StatusCode};
        let writer = self.sink.next().unwrap();
        let mut response = Response::new_empty(StatusCode(status));
        if let Ok(h) = Header::from_bytes(&b"Connection"[..], &b"close"[..]) {
            response.add_header(h);
        }
        response.raw_print(writer, version, &[], false, None).ok();
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
