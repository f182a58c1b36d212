//! Lease sources other than the 4o6 authority.
