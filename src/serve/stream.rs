//! Writing a streamed response straight to the client socket.
//!
//! tiny_http's own body path copies every byte through an 8 KiB `io::copy` buffer and its
//! chunk encoder; at 300 MB per scrape those copies and the small writes dominated. Here the
//! renderer formats into a buffer that already has room for the chunk header in front, so each
//! 64 KiB chunk reaches the socket in one `write` with no further copying.

use std::io::{self, Write};

/// Room reserved before each chunk for its `<hex length>\r\n` header: 16 hex digits cover
/// any `usize`, so no chunk length can overflow it (the renderer keeps chunks near 64 KiB,
/// but the framing must not depend on that).
const HEADER_ROOM: usize = 18;

/// HTTP/1.1 chunked transfer encoding over a raw writer.
pub struct Chunked<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Chunked<W> {
    /// Wraps the raw connection writer (after the response head has been written).
    pub fn new(inner: W) -> Chunked<W> {
        let mut buf = Vec::with_capacity(HEADER_ROOM + 80 * 1024);
        buf.resize(HEADER_ROOM, 0);
        Chunked { inner, buf }
    }

    /// The staging buffer: append body bytes here, then call [`Chunked::emit`].
    pub fn staging(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Sends the staged bytes as one chunk.
    pub fn emit(&mut self) -> io::Result<()> {
        let len = self.buf.len() - HEADER_ROOM;
        if len == 0 {
            return Ok(());
        }
        let head = format!("{len:x}\r\n");
        let start = HEADER_ROOM - head.len();
        self.buf[start..HEADER_ROOM].copy_from_slice(head.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
        self.inner.write_all(&self.buf[start..])?;
        self.buf.truncate(HEADER_ROOM);
        Ok(())
    }

    /// Sends what is staged and the terminating zero-length chunk.
    pub fn finish(mut self) -> io::Result<W> {
        self.emit()?;
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= HEADER_ROOM + 64 * 1024 {
            self.emit()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_chunks_of_any_length() {
        for len in [1usize, 15, 16, 0xfff_fff, 0x100_0000, 0x123_4567] {
            let mut c = Chunked::new(Vec::new());
            c.staging().resize(HEADER_ROOM + len, b'x');
            c.emit().unwrap();
            let out = c.finish().unwrap();
            let head = format!("{len:x}\r\n");
            assert!(out.starts_with(head.as_bytes()), "len {len}");
            assert_eq!(out.len(), head.len() + len + 2 + 5, "len {len}");
            assert!(out.ends_with(b"x\r\n0\r\n\r\n"));
        }
    }

    #[test]
    fn frames_chunks() {
        let mut c = Chunked::new(Vec::new());
        c.staging().extend_from_slice(b"hello");
        c.emit().unwrap();
        c.write_all(b" world").unwrap();
        let out = c.finish().unwrap();
        assert_eq!(out, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    }
}
