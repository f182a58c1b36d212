//! Lease sources other than the 4o6 authority.
//!
//! - [`import`]: the `--import FILE` JSON-lines file, read once at start and partitioned into
//!   per-shard owned bindings with the routing functions of [`crate::lease`].

pub mod import;

pub use import::{load_file, load_str, ImportError, ImportedShards};
