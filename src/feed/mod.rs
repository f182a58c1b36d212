//! Lease sources other than the 4o6 authority.
//!
//! - [`import`]: the `--import FILE` JSON-lines file, read once at start and partitioned into
//!   per-shard owned bindings with the routing functions of [`crate::lease`].
//! - [`follow`]: the `--feed FILE` JSON-lines file (same format), followed as it grows; each
//!   line is a binding change published to active leasequery subscribers.

pub mod follow;
pub mod import;

pub use import::{load_file, load_str, parse_line, FeedBinding, ImportError, ImportedShards};
