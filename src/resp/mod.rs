//! The Redis serialization protocol (RESP2): frames, encoding and decoding.

mod frame;
mod parse;

pub use frame::{encode_command, encode_push, Frame};
pub use parse::{parse_command, parse_frame, parse_i64, split_args, Limits, ProtocolError};

#[cfg(test)]
mod tests;
