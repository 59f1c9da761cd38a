//! The crate every switchyard edge function builds on.
//!
//! `function` is the skeleton every function's fetch handler goes through.
//! Everything here that makes a decision is plain Rust and unit-tested natively;
//! only `function::serve`, `http`, `fetch`, `postgrest::Client` (the transport
//! half) and `log::emit` touch the Workers runtime.

pub mod auth;
pub mod config;
pub mod correlation;
pub mod error;
pub mod fetch;
pub mod function;
pub mod http;
pub mod invocation;
pub mod log;
pub mod n8n;
pub mod page;
pub mod postgrest;
pub mod rpc;
pub mod signature;
pub mod time;
