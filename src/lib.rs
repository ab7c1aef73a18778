//! cluster-shm: shared state for Node.js cluster workers.
//!
//! The primary hosts a broker (a RESP server on a Unix socket, on its own
//! threads) and calls its store in-process; other processes reach it with a
//! pipelining client. The N-API surface is the `node` module (the default
//! `node` feature); without it the crate is the broker and client alone
//! (fuzzing, benchmarks).

mod alloc;
pub mod broker;
pub mod cmd;
pub mod error;
#[cfg(feature = "node")]
mod node;
pub mod resp;
pub mod shm;
pub mod store;
pub mod subscriber;
pub mod trusted_socket;
