//! What the benches share: values shaped like the JS bench's (bench/lib/workload.js).

/// A JSON object of exactly `bytes` bytes, shaped like the bench's values.
pub fn json_value(i: usize, bytes: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"id":{i},"user":"user-{i}","active":{},"score":{},"tags":["a","b"],"pad":""#,
        i.is_multiple_of(2),
        (i * 7919) % 1000
    );
    let mut text = head.into_bytes();
    text.resize(bytes - 2, b'x');
    text.extend_from_slice(b"\"}");
    text
}
