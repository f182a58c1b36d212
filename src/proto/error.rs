//! Decode and encode errors. Small, `Copy`, and cheap to return: untrusted input is rejected with
//! one of these, never with a panic.

use thiserror::Error;

/// Why a byte sequence is not a valid message, option or frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field it announces.
    #[error("truncated: needed {needed} more octets at offset {at}")]
    Truncated { at: usize, needed: usize },
    /// A 2-octet TCP frame length of zero (RFC 5460 §5.1 has no empty message).
    #[error("zero-length frame")]
    EmptyFrame,
    /// An option whose length is wrong for its code.
    #[error("option {code}: length {len} is invalid")]
    BadOptionLength { code: u16, len: usize },
    /// An option whose contents are invalid for its code (not a length problem).
    #[error("option {code}: invalid value")]
    BadOptionValue { code: u16 },
    /// A DHCPv4 message whose magic cookie is not 99.130.83.99.
    #[error("bad DHCPv4 magic cookie")]
    BadMagicCookie,
    /// A DHCPv4 `hlen` above 16.
    #[error("DHCPv4 hlen {0} exceeds 16")]
    BadHlen(u8),
    /// A DHCPv4 message without option 53.
    #[error("DHCPv4 message type option missing")]
    MissingMessageType,
    /// A DHCPv4 option list without END (and not ending exactly at the buffer's end).
    #[error("DHCPv4 options not terminated")]
    MissingEnd,
    /// Relay messages nested deeper than the decoder allows (RFC 8415 HOP_COUNT_LIMIT is 8).
    #[error("nesting too deep")]
    TooDeep,
    /// A message type that is not valid where it was found.
    #[error("unexpected message type {0}")]
    UnexpectedMessageType(u8),
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A DHCPv6 option payload over 65535 octets, or a DHCPv4 message over 65535 octets.
    #[error("value of {len} octets is too long for its length field (max {max})")]
    TooLong { len: usize, max: usize },
    /// The destination buffer has no room for the value; nothing was written.
    #[error("buffer full: needed {needed} octets, {available} available")]
    BufferFull { needed: usize, available: usize },
    /// A field that cannot be represented (for example a chaddr longer than 16 octets).
    #[error("invalid field: {0}")]
    Invalid(&'static str),
}
