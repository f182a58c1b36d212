//! Lease sources other than the 4o6 authority: the JSON-lines import file.
pub mod import;
