//! RESP2 frames and their wire encoding.

use bytes::{BufMut, Bytes, BytesMut};

/// One RESP2 value, as sent by the broker or read back by a test client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `+OK\r\n`
    Simple(String),
    /// `-ERR message\r\n`; the text includes the error prefix (`ERR`, `WRONGTYPE`, ...).
    Error(String),
    /// `:42\r\n`
    Integer(i64),
    /// `$3\r\nfoo\r\n`
    Bulk(Bytes),
    /// `$-1\r\n`, the reply for a missing value.
    Null,
    /// `*-1\r\n`, the reply of an aborted transaction or a timed-out blocking call.
    NullArray,
    /// `*2\r\n...`, possibly nested.
    Array(Vec<Frame>),
    /// Several replies to one command, written one after another (SUBSCRIBE
    /// confirms each channel separately). Never read off the wire.
    Many(Vec<Frame>),
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    /// An error reply; `text` carries its own prefix, e.g. `ERR syntax error`.
    pub fn error(text: impl Into<String>) -> Frame {
        Frame::Error(text.into())
    }

    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(data.into())
    }

    pub fn bulk_str(text: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// Appends the wire form of this frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::Error(s) => line(out, b'-', s.as_bytes()),
            Frame::Integer(n) => {
                let mut buf = itoa::Buffer::new();
                line(out, b':', buf.format(*n).as_bytes());
            }
            Frame::Bulk(data) => {
                encode_len(out, b'$', data.len());
                out.reserve(data.len() + 2);
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => {
                encode_len(out, b'*', items.len());
                for item in items {
                    item.encode(out);
                }
            }
            Frame::Many(replies) => {
                for reply in replies {
                    reply.encode(out);
                }
            }
        }
    }

    /// The wire form as a fresh buffer (tests and one-off replies).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// A push (RESP3's `>`): a frame the client did not ask for, such as a lock
/// wait's outcome or a pub/sub message on a connection that asked for
/// pushes, sent in order with the replies. Clients tell it from a reply by
/// its first byte.
pub fn encode_push(items: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    encode_len(&mut out, b'>', items.len());
    for item in items {
        item.encode(&mut out);
    }
    out.freeze()
}

/// Writes a command as a RESP array of bulk strings, the form clients send.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut BytesMut) {
    encode_len(out, b'*', args.len());
    for arg in args {
        let arg = arg.as_ref();
        encode_len(out, b'$', arg.len());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

fn line(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.put_u8(tag);
    // Simple strings and errors may not contain CR or LF; replace them so a
    // reply can never break the framing of the replies behind it.
    if body.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(body.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    } else {
        out.put_slice(body);
    }
    out.put_slice(b"\r\n");
}

fn encode_len(out: &mut BytesMut, tag: u8, len: usize) {
    let mut buf = itoa::Buffer::new();
    line(out, tag, buf.format(len).as_bytes());
}
