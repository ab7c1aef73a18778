//! Any bytes through both RESP decoders: no panic, no runaway allocation,
//! and a decoded frame encodes back to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use cluster_shm::resp::{parse_command, parse_frame, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bulk_len: 1 << 20, max_array_len: 1 << 12, max_inline_len: 1 << 12, max_depth: 32 };
    if let Ok(Some((frame, used))) = parse_frame(data, &limits) {
        assert!(used <= data.len());
        let encoded = frame.to_bytes();
        let (again, used_again) = parse_frame(&encoded, &limits).unwrap().unwrap();
        assert_eq!(again, frame);
        assert_eq!(used_again, encoded.len());
    }
    let mut buf = BytesMut::from(data);
    let mut commands = 0;
    while let Ok(Some(args)) = parse_command(&mut buf, &limits) {
        assert!(args.len() <= limits.max_array_len);
        commands += 1;
        if commands > 10_000 {
            break;
        }
    }
});
