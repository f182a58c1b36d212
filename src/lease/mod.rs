//! The binding model, the per-shard lease table with its indexes, and shard routing (sans-io).
