//! The crate every switchyard edge function builds on.
//!
//! Everything here that makes a decision is plain Rust and unit-tested natively;
//! only `http`, `fetch`, `postgrest` (the transport half) and `log::emit` touch the
//! Workers runtime.

pub mod config;
pub mod correlation;
pub mod error;
pub mod fetch;
pub mod http;
pub mod log;
pub mod postgrest;
pub mod request;
pub mod signature;
pub mod time;
