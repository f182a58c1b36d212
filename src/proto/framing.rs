//! TCP framing of leasequery connections (RFC 5460 §5.1, RFC 6926 §6.1): every message is
//! preceded by a 2-octet big-endian length that counts only the message, not itself.
//!
//! [`decode_frame`] consumes exactly one frame; a caller holding several pipelined frames in
//! one buffer decodes them one after another, advancing by `consumed` each time.

use crate::proto::error::{DecodeError, EncodeError};

/// The largest message a frame can carry: the length field is 16 bits.
pub const MAX_MESSAGE: usize = 65535;

/// Octets of the length prefix.
const PREFIX: usize = 2;

/// The largest frame: the length prefix and a [`MAX_MESSAGE`] message (65537 octets). A buffer
/// this large holds any one message, so a writer limited to it never refuses a message for room.
pub const MAX_FRAME: usize = PREFIX + MAX_MESSAGE;

/// The result of looking at the front of a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One whole message; `consumed` (prefix + message) octets of the buffer belong to it.
    Complete { msg: &'a [u8], consumed: usize },
    /// The buffer holds only part of a frame (possibly part of the prefix): read more.
    NeedMore,
}

/// Decodes the frame at the start of `buf`. A zero length is [`DecodeError::EmptyFrame`]
/// (there is no empty DHCP message; the connection should be closed).
pub fn decode_frame(buf: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let &[hi, lo, ..] = buf else {
        return Ok(Frame::NeedMore);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    let consumed = PREFIX + len;
    Ok(match buf.get(PREFIX..consumed) {
        Some(msg) => Frame::Complete { msg, consumed },
        None => Frame::NeedMore,
    })
}

/// The 2-octet prefix for a message of `msg_len` octets; [`EncodeError::TooLong`] above
/// [`MAX_MESSAGE`].
pub fn length_prefix(msg_len: usize) -> Result<[u8; 2], EncodeError> {
    u16::try_from(msg_len)
        .map(u16::to_be_bytes)
        .map_err(|_| EncodeError::TooLong {
            len: msg_len,
            max: MAX_MESSAGE,
        })
}

/// Appends prefix and message to `out`. A message over [`MAX_MESSAGE`] is
/// [`EncodeError::TooLong`] and nothing is written (it is never truncated).
pub fn encode_frame(msg: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let prefix = length_prefix(msg.len())?;
    out.reserve(PREFIX + msg.len());
    out.extend_from_slice(&prefix);
    out.extend_from_slice(msg);
    Ok(())
}
