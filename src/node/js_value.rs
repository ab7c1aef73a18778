//! Conversions between JavaScript values and commands or replies.

use std::ptr;

use bytes::Bytes;
use napi::bindgen_prelude::{FromNapiValue, ToNapiValue, TypeName, ValidateNapiValue};
use napi::{check_status, sys, ValueType};

use crate::resp::Frame;

/// A command from JS: an array of strings and Buffers.
pub struct Args(pub Vec<Bytes>);

impl TypeName for Args {
    fn type_name() -> &'static str {
        "Array<string | Buffer>"
    }

    fn value_type() -> ValueType {
        ValueType::Object
    }
}

impl ValidateNapiValue for Args {}

impl FromNapiValue for Args {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        let mut length = 0u32;
        check_status!(sys::napi_get_array_length(env, value, &mut length), "command must be an array")?;
        let mut args = Vec::with_capacity(length as usize);
        for index in 0..length {
            let mut item = ptr::null_mut();
            check_status!(sys::napi_get_element(env, value, index, &mut item))?;
            args.push(arg_bytes(env, item)?);
        }
        Ok(Args(args))
    }
}

/// One command argument from JS: a string or a Buffer.
#[cfg_attr(test, allow(dead_code))]
pub struct Arg(pub Bytes);

impl TypeName for Arg {
    fn type_name() -> &'static str {
        "string | Buffer"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ValidateNapiValue for Arg {}

impl FromNapiValue for Arg {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        arg_bytes(env, value).map(Arg)
    }
}

/// A value argument as it lies in JS memory: a Buffer's bytes, or the two
/// parts of an array of Buffers (a value's tag and its body), borrowed for
/// the length of the N-API call that received it; a string, or more parts,
/// copied out as [`Arg`] does.
#[cfg_attr(test, allow(dead_code))]
pub enum ValueArg {
    Borrowed([(*const u8, usize); 2]),
    Owned(Bytes),
}

impl TypeName for ValueArg {
    fn type_name() -> &'static str {
        "string | Buffer | Buffer[]"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ValidateNapiValue for ValueArg {}

impl FromNapiValue for ValueArg {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Self> {
        let mut kind = 0;
        check_status!(sys::napi_typeof(env, value, &mut kind))?;
        if kind == sys::ValueType::napi_object {
            if is_buffer(env, value)? {
                return Ok(ValueArg::Borrowed([buffer_bytes(env, value)?, (ptr::null(), 0)]));
            }
            let mut is_array = false;
            check_status!(sys::napi_is_array(env, value, &mut is_array))?;
            if is_array {
                let parts = array_parts(env, value)?;
                return Ok(match parts[..] {
                    [] => ValueArg::Owned(Bytes::new()),
                    [one] => ValueArg::Borrowed([one, (ptr::null(), 0)]),
                    [head, tail] => ValueArg::Borrowed([head, tail]),
                    _ => ValueArg::Owned(join(&parts)),
                });
            }
        }
        arg_bytes_of(env, value, kind).map(ValueArg::Owned)
    }
}

#[cfg_attr(test, allow(dead_code))]
impl ValueArg {
    /// The value's parts, to be written one after the other.
    ///
    /// # Safety
    /// Borrowed parts are JS memory: use them only within the N-API call
    /// that received this argument.
    pub unsafe fn parts(&self) -> [&[u8]; 2] {
        match self {
            // SAFETY: Buffers' bytes, alive while the call runs.
            ValueArg::Borrowed(parts) => parts.map(|part| unsafe { part_slice(&part) }),
            ValueArg::Owned(bytes) => [&bytes[..], &[]],
        }
    }

    /// The value in one piece (a copy of borrowed parts).
    ///
    /// # Safety
    /// As for [`ValueArg::parts`].
    pub unsafe fn joined(&self) -> Bytes {
        match self {
            ValueArg::Owned(bytes) => bytes.clone(),
            // SAFETY: as the caller promises.
            ValueArg::Borrowed(parts) => unsafe { join(parts) },
        }
    }
}

unsafe fn is_buffer(env: sys::napi_env, value: sys::napi_value) -> napi::Result<bool> {
    let mut is_buffer = false;
    check_status!(sys::napi_is_buffer(env, value, &mut is_buffer))?;
    Ok(is_buffer)
}

/// A Buffer's bytes where they lie; anything else is ERR_SHM_BAD_ARGUMENT
/// with `message`.
unsafe fn required_buffer(
    env: sys::napi_env,
    value: sys::napi_value,
    message: &str,
) -> napi::Result<(*const u8, usize)> {
    if !is_buffer(env, value)? {
        return Err(napi::Error::new(napi::Status::InvalidArg, format!("ERR_SHM_BAD_ARGUMENT {message}")));
    }
    buffer_bytes(env, value)
}

/// A Buffer's bytes where they lie, to write into; anything else is
/// ERR_SHM_BAD_ARGUMENT with `message`.
///
/// # Safety
/// The Buffer's memory is alive within the N-API call that got it: use the
/// slice only there.
pub unsafe fn writable_buffer<'a>(
    env: sys::napi_env,
    value: sys::napi_value,
    message: &str,
) -> napi::Result<&'a mut [u8]> {
    // SAFETY: a Buffer's memory, writable, of this length.
    unsafe {
        let (data, length) = required_buffer(env, value, message)?;
        Ok(if length == 0 { &mut [] } else { std::slice::from_raw_parts_mut(data.cast_mut(), length) })
    }
}

/// A Buffer's bytes where they lie.
unsafe fn buffer_bytes(env: sys::napi_env, value: sys::napi_value) -> napi::Result<(*const u8, usize)> {
    let mut data = ptr::null_mut();
    let mut length = 0usize;
    check_status!(sys::napi_get_buffer_info(env, value, &mut data, &mut length))?;
    Ok((data as *const u8, length))
}

/// The bytes a part lies at, as a slice.
///
/// # Safety
/// The part's memory is alive (a Buffer's, within the call that got it).
unsafe fn part_slice<'a>(&(data, length): &(*const u8, usize)) -> &'a [u8] {
    // SAFETY: as the caller promises; a null pointer only ever has length 0.
    if length == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(data, length) }
    }
}

/// Parts joined in one copy.
///
/// # Safety
/// As for [`part_slice`].
unsafe fn join(parts: &[(*const u8, usize)]) -> Bytes {
    let mut joined = Vec::with_capacity(parts.iter().map(|&(_, len)| len).sum());
    for part in parts {
        // SAFETY: as the caller promises.
        joined.extend_from_slice(unsafe { part_slice(part) });
    }
    Bytes::from(joined)
}

/// Where the Buffers of an argument given as an array of them lie. Every
/// element is fetched first, then where its bytes lie: fetching an element
/// may run JS (a getter), which could free the memory of a Buffer already
/// looked at.
unsafe fn array_parts(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Vec<(*const u8, usize)>> {
    let mut count = 0u32;
    check_status!(sys::napi_get_array_length(env, value, &mut count))?;
    let mut items = Vec::with_capacity(count as usize);
    for index in 0..count {
        let mut item = ptr::null_mut();
        check_status!(sys::napi_get_element(env, value, index, &mut item))?;
        items.push(item);
    }
    items
        .into_iter()
        .map(|item| required_buffer(env, item, "an argument given in parts must be an array of Buffers"))
        .collect()
}

/// Strings of fewer UTF-16 units than this are copied out in one call,
/// through a buffer on the stack; longer ones are measured first.
const SHORT_STRING: usize = 512;

/// A string's UTF-8 (a lone surrogate becomes U+FFFD, as V8's UTF-8 writer
/// makes it). Taken as UTF-16 and encoded here: V8 hands out UTF-16 as a
/// block copy (widening a one-byte string), where its UTF-8 writer encodes
/// one character at a time, which made it the largest single cost of a
/// worker's 100-byte `set` (about 15 % of the native call).
unsafe fn string_bytes(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Bytes> {
    // V8 copies at most bufsize - 1 units and adds a NUL: fewer copied than
    // that means the whole string was.
    let mut stack = [0u16; SHORT_STRING];
    let mut length = 0usize;
    check_status!(sys::napi_get_value_string_utf16(env, value, stack.as_mut_ptr(), stack.len(), &mut length))?;
    if length < SHORT_STRING - 1 {
        return Ok(utf16_to_utf8(&stack[..length]));
    }
    check_status!(sys::napi_get_value_string_utf16(env, value, ptr::null_mut(), 0, &mut length))?;
    let mut units = vec![0u16; length + 1];
    check_status!(sys::napi_get_value_string_utf16(env, value, units.as_mut_ptr(), units.len(), &mut length))?;
    Ok(utf16_to_utf8(&units[..length]))
}

/// UTF-16 as UTF-8; a lone surrogate becomes U+FFFD.
fn utf16_to_utf8(units: &[u16]) -> Bytes {
    // Written to vectorize: no early exit.
    if units.iter().fold(0, |all, &unit| all | unit) < 0x80 {
        return Bytes::from(units.iter().map(|&unit| unit as u8).collect::<Vec<u8>>());
    }
    let mut out = Vec::with_capacity(units.len() * 3);
    for c in char::decode_utf16(units.iter().copied()) {
        let mut encoded = [0u8; 4];
        out.extend_from_slice(c.unwrap_or(char::REPLACEMENT_CHARACTER).encode_utf8(&mut encoded).as_bytes());
    }
    Bytes::from(out)
}

unsafe fn arg_bytes(env: sys::napi_env, value: sys::napi_value) -> napi::Result<Bytes> {
    let mut kind = 0;
    check_status!(sys::napi_typeof(env, value, &mut kind))?;
    arg_bytes_of(env, value, kind)
}

/// An argument's bytes, copied, for a value of the type `kind`: a string's
/// UTF-8, a Buffer's bytes, or an array of Buffers' bytes joined (a value's
/// tag and its body, which JS would otherwise concatenate first).
unsafe fn arg_bytes_of(env: sys::napi_env, value: sys::napi_value, kind: sys::napi_valuetype) -> napi::Result<Bytes> {
    if kind == sys::ValueType::napi_object {
        let mut is_array = false;
        check_status!(sys::napi_is_array(env, value, &mut is_array))?;
        if is_array {
            return Ok(join(&array_parts(env, value)?));
        }
    }
    if kind == sys::ValueType::napi_string {
        return string_bytes(env, value);
    }
    let buffer = required_buffer(env, value, "command arguments must be strings or Buffers")?;
    Ok(Bytes::copy_from_slice(part_slice(&buffer)))
}

/// A reply on its way to JS. An error reply at the top level becomes a
/// rejection (see [`Reply::into_result`]); nested ones become Error objects.
pub struct Reply(pub Frame);

impl Reply {
    pub fn into_result(self) -> napi::Result<Reply> {
        match self.0 {
            Frame::Error(text) => Err(crate::error::ShmError::Server(text).into()),
            frame => Ok(Reply(frame)),
        }
    }
}

impl ToNapiValue for Reply {
    unsafe fn to_napi_value(env: sys::napi_env, reply: Self) -> napi::Result<sys::napi_value> {
        frame_to_js(env, &reply.0, false)
    }
}

/// A JS value made already, returned as it is.
pub struct JsRaw(pub sys::napi_value);

impl ToNapiValue for JsRaw {
    unsafe fn to_napi_value(_env: sys::napi_env, value: Self) -> napi::Result<sys::napi_value> {
        Ok(value.0)
    }
}

/// A reply whose bulk strings become JS strings (UTF-8, invalid bytes
/// replaced) instead of Buffers: for a list of keys, a million Buffers cost
/// a malloc'd backing store each, which the process's RSS kept long after
/// they were collected.
pub struct TextReply(pub Frame);

impl ToNapiValue for TextReply {
    unsafe fn to_napi_value(env: sys::napi_env, reply: Self) -> napi::Result<sys::napi_value> {
        frame_to_js(env, &reply.0, true)
    }
}

unsafe fn frame_to_js(env: sys::napi_env, frame: &Frame, text: bool) -> napi::Result<sys::napi_value> {
    let mut out = ptr::null_mut();
    match frame {
        Frame::Simple(text) => {
            check_status!(sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut out))?;
        }
        Frame::Integer(n) => {
            check_status!(sys::napi_create_int64(env, *n, &mut out))?;
        }
        Frame::Bulk(data) if text => {
            check_status!(sys::napi_create_string_utf8(env, data.as_ptr().cast(), data.len() as isize, &mut out))?;
        }
        Frame::Bulk(data) => {
            let mut copy = ptr::null_mut();
            check_status!(sys::napi_create_buffer_copy(env, data.len(), data.as_ptr().cast(), &mut copy, &mut out))?;
        }
        Frame::Null | Frame::NullArray => {
            check_status!(sys::napi_get_null(env, &mut out))?;
        }
        Frame::Array(items) | Frame::Many(items) => {
            check_status!(sys::napi_create_array_with_length(env, items.len(), &mut out))?;
            for (index, item) in items.iter().enumerate() {
                let value = frame_to_js(env, item, text)?;
                check_status!(sys::napi_set_element(env, out, index as u32, value))?;
            }
        }
        Frame::Error(text) => {
            let (mut code, mut message) = (ptr::null_mut(), ptr::null_mut());
            let code_text = "ERR_SHM_SERVER";
            check_status!(sys::napi_create_string_utf8(
                env,
                code_text.as_ptr().cast(),
                code_text.len() as isize,
                &mut code
            ))?;
            check_status!(sys::napi_create_string_utf8(env, text.as_ptr().cast(), text.len() as isize, &mut message))?;
            check_status!(sys::napi_create_error(env, code, message, &mut out))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::utf16_to_utf8;

    fn utf16(text: &str) -> Vec<u16> {
        text.encode_utf16().collect()
    }

    #[test]
    fn utf16_becomes_the_utf8_of_the_same_text() {
        for text in
            ["", "plain", "é 日本 😀", &"x😀".repeat(700), "\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}"]
        {
            assert_eq!(&utf16_to_utf8(&utf16(text))[..], text.as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn a_lone_surrogate_becomes_u_fffd() {
        let units = [0x61, 0xd800, 0x62, 0xdc00];
        assert_eq!(&utf16_to_utf8(&units)[..], "a\u{fffd}b\u{fffd}".as_bytes());
    }
}
