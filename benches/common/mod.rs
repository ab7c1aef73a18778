//! What the benches share: their criterion settings, and values shaped
//! like the JS bench's (bench/lib/workload.js).

use std::time::Duration;

use criterion::Criterion;

/// Short runs, so that `cargo bench` stays around a minute.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

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
