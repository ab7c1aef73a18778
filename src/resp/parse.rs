//! Incremental RESP2 decoding.
//!
//! Both decoders look at a buffer that may hold a partial frame: they return
//! `Ok(None)` until a whole frame is there, consume nothing in that case, and
//! never allocate ahead of the bytes that have actually arrived.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use super::Frame;

/// Bounds that keep a hostile or broken peer from making the decoder allocate
/// without limit (Redis's `proto-max-bulk-len` and friends).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bulk_len: usize,
    pub max_array_len: usize,
    /// Longest header line or inline command accepted before its newline.
    pub max_inline_len: usize,
    /// Deepest array nesting accepted by [`parse_frame`].
    pub max_depth: usize,
}

impl Limits {
    /// Before AUTH a client may send only small commands (as in Redis), so
    /// a stranger cannot make the broker buffer much.
    pub fn unauthenticated() -> Limits {
        Limits { max_bulk_len: 16 * 1024, max_array_len: 10, ..Limits::default() }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bulk_len: 512 * 1024 * 1024, max_array_len: 1024 * 1024, max_inline_len: 64 * 1024, max_depth: 64 }
    }
}

/// A stream that cannot be decoded; the connection must be closed after
/// replying with [`ProtocolError::reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    InvalidMultibulkLength,
    InvalidBulkLength,
    ExpectedBulk(u8),
    TooBigCountString,
    TooBigInline,
    UnbalancedQuotes,
    UnexpectedByte(u8),
    InvalidInteger,
    TooDeep,
}

impl ProtocolError {
    /// The error reply Redis sends before closing the connection.
    pub fn reply(&self) -> Frame {
        Frame::Error(format!("ERR {self}"))
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InvalidMultibulkLength => f.write_str("Protocol error: invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("Protocol error: invalid bulk length"),
            ProtocolError::ExpectedBulk(b) => {
                write!(f, "Protocol error: expected '$', got '{}'", char::from(*b).escape_default())
            }
            ProtocolError::TooBigCountString => f.write_str("Protocol error: too big mbulk count string"),
            ProtocolError::TooBigInline => f.write_str("Protocol error: too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("Protocol error: unbalanced quotes in request"),
            ProtocolError::UnexpectedByte(b) => {
                write!(f, "Protocol error: unexpected byte '{}'", char::from(*b).escape_default())
            }
            ProtocolError::InvalidInteger => f.write_str("Protocol error: invalid integer"),
            ProtocolError::TooDeep => f.write_str("Protocol error: nesting too deep"),
        }
    }
}

impl std::error::Error for ProtocolError {}

type Parsed<T> = Result<Option<T>, ProtocolError>;

/// Takes one client command off the front of `buf`: a multibulk array of bulk
/// strings, or an inline command line. An empty command (`*0`, a blank line)
/// yields an empty vector, which the caller skips as Redis does.
pub fn parse_command(buf: &mut BytesMut, limits: &Limits) -> Parsed<Vec<Bytes>> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'*' {
        parse_multibulk(buf, limits)
    } else {
        parse_inline(buf, limits)
    }
}

fn parse_multibulk(buf: &mut BytesMut, limits: &Limits) -> Parsed<Vec<Bytes>> {
    let Some((count, mut pos)) = header_line(buf, 1, limits, ProtocolError::InvalidMultibulkLength)? else {
        return Ok(None);
    };
    if count > limits.max_array_len as i64 {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    if count <= 0 {
        buf.advance(pos);
        return Ok(Some(Vec::new()));
    }
    let count = count as usize;
    // Offsets first: nothing is consumed until the whole command is present.
    let mut spans = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedBulk(other)),
        }
        let Some((len, body)) = header_line(buf, pos + 1, limits, ProtocolError::InvalidBulkLength)? else {
            return Ok(None);
        };
        if len < 0 || len as u64 > limits.max_bulk_len as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        let end = body + len as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        spans.push((body, end));
        pos = end + 2;
    }
    let frame = buf.split_to(pos).freeze();
    Ok(Some(spans.into_iter().map(|(s, e)| frame.slice(s..e)).collect()))
}

/// Reads the integer on the line that starts at `start` (just past the type
/// byte). Returns the integer and the offset just past its CRLF.
fn header_line(buf: &[u8], start: usize, limits: &Limits, invalid: ProtocolError) -> Parsed<(i64, usize)> {
    let Some(cr) = find_byte(buf, start, b'\r') else {
        return if buf.len() - start.min(buf.len()) > limits.max_inline_len {
            Err(ProtocolError::TooBigCountString)
        } else {
            Ok(None)
        };
    };
    if cr + 1 >= buf.len() {
        return Ok(None);
    }
    let value = parse_i64(&buf[start..cr]).ok_or(invalid)?;
    Ok(Some((value, cr + 2)))
}

fn parse_inline(buf: &mut BytesMut, limits: &Limits) -> Parsed<Vec<Bytes>> {
    let Some(nl) = find_byte(buf, 0, b'\n') else {
        return if buf.len() > limits.max_inline_len { Err(ProtocolError::TooBigInline) } else { Ok(None) };
    };
    let line = buf.split_to(nl + 1);
    let mut text = &line[..nl];
    if let Some(stripped) = text.strip_suffix(b"\r") {
        text = stripped;
    }
    split_args(text).map(Some).ok_or(ProtocolError::UnbalancedQuotes)
}

/// Splits an inline command the way redis-cli users expect (`sdssplitargs`):
/// whitespace separates arguments, double quotes allow escapes such as `\n`
/// and `\x41`, single quotes are literal except for `\'`.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = line.get(i).copied();
            if in_double {
                match c {
                    None => return None,
                    Some(b'\\')
                        if line.get(i + 1) == Some(&b'x')
                            && i + 3 < line.len()
                            && hex_pair(line[i + 2], line[i + 3]).is_some() =>
                    {
                        current.push(hex_pair(line[i + 2], line[i + 3]).unwrap_or(0));
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        current.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        // A closing quote must be followed by a space or the end.
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        in_double = false;
                    }
                    Some(other) => current.push(other),
                }
            } else if in_single {
                match c {
                    None => return None,
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        current.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                            return None;
                        }
                        in_single = false;
                    }
                    Some(other) => current.push(other),
                }
            } else {
                match c {
                    None => break,
                    Some(b) if b.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(other) => current.push(other),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(current));
    }
}

fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    Some(digit(hi)? << 4 | digit(lo)?)
}

/// Decodes any RESP2 frame from the front of `buf`; returns the frame and the
/// number of bytes it took. Used for replies (tests, tooling) and fuzzing.
pub fn parse_frame(buf: &[u8], limits: &Limits) -> Parsed<(Frame, usize)> {
    parse_frame_at(buf, 0, limits, 0)
}

fn parse_frame_at(buf: &[u8], pos: usize, limits: &Limits, depth: usize) -> Parsed<(Frame, usize)> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    match tag {
        b'+' | b'-' | b':' => {
            let Some(cr) = find_byte(buf, pos + 1, b'\r') else {
                return if buf.len() - pos > limits.max_inline_len {
                    Err(ProtocolError::TooBigInline)
                } else {
                    Ok(None)
                };
            };
            if cr + 1 >= buf.len() {
                return Ok(None);
            }
            let body = &buf[pos + 1..cr];
            // A line frame ends at its CRLF: a bare LF inside is malformed
            // (and would not survive being written out again).
            if body.contains(&b'\n') {
                return Err(ProtocolError::UnexpectedByte(b'\n'));
            }
            let frame = match tag {
                b'+' => Frame::Simple(String::from_utf8_lossy(body).into_owned()),
                b'-' => Frame::Error(String::from_utf8_lossy(body).into_owned()),
                _ => Frame::Integer(parse_i64(body).ok_or(ProtocolError::InvalidInteger)?),
            };
            Ok(Some((frame, cr + 2)))
        }
        b'$' => {
            let Some((len, body)) = header_line(buf, pos + 1, limits, ProtocolError::InvalidBulkLength)? else {
                return Ok(None);
            };
            if len == -1 {
                return Ok(Some((Frame::Null, body)));
            }
            if len < 0 || len as u64 > limits.max_bulk_len as u64 {
                return Err(ProtocolError::InvalidBulkLength);
            }
            let end = body + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::InvalidBulkLength);
            }
            Ok(Some((Frame::Bulk(Bytes::copy_from_slice(&buf[body..end])), end + 2)))
        }
        b'*' => {
            let Some((count, mut next)) = header_line(buf, pos + 1, limits, ProtocolError::InvalidMultibulkLength)?
            else {
                return Ok(None);
            };
            if count == -1 {
                return Ok(Some((Frame::NullArray, next)));
            }
            if count < 0 || count > limits.max_array_len as i64 {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            if depth >= limits.max_depth {
                return Err(ProtocolError::TooDeep);
            }
            let mut items = Vec::with_capacity((count as usize).min(64));
            for _ in 0..count {
                let Some((item, after)) = parse_frame_at(buf, next, limits, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                next = after;
            }
            Ok(Some((Frame::Array(items), next)))
        }
        other => Err(ProtocolError::UnexpectedByte(other)),
    }
}

fn find_byte(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
    if from >= buf.len() {
        return None;
    }
    memchr::memchr(byte, &buf[from..]).map(|i| i + from)
}

/// Strict integer parsing as Redis's `string2ll`: an optional minus sign and
/// digits, nothing else, no overflow.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first()? {
        b'-' => (true, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = (d - b'0') as i64;
        value = value.checked_mul(10)?;
        value = if negative { value.checked_sub(digit)? } else { value.checked_add(digit)? };
    }
    if negative && value == 0 {
        return None;
    }
    Some(value)
}
