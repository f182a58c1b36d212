//! DHCPv6 messages and options (RFC 8415 §8-9, §21; leasequery: RFC 5007, 5460, 7653; DHCP4o6:
//! RFC 7341; softwires: RFC 7598, 8539).
//!
//! Two forms:
//! - a borrowed, zero-copy **view** for decoding on the hot path: [`AnyView`], [`MessageView`],
//!   [`RelayView`], [`OptionsView`], [`RawOption`]. Constructing a view walks the option list
//!   once and rejects truncation, so iterating it afterwards cannot fail. Payloads are checked
//!   lazily by the accessors ([`RawOption::typed`], [`RawOption::u32_value`], ...).
//! - an owned form for building and for tests: [`Message`], [`RelayMessage`], [`V6Option`].
//!   `decode` checks every option's length rules (codepoints-and-scenarios.md §1.2).
//!
//! Both keep options in wire order with repeats (unlike dhcproto, which sorts them).

mod option;

use std::net::Ipv6Addr;

use crate::proto::codes::{v6msg, v6opt};
use crate::proto::error::{DecodeError, EncodeError};

pub use option::{V6Option, MAX_OPTION_DEPTH};

/// RFC 8415 §7.6 HOP_COUNT_LIMIT. A relay with hop-count 7 still forwards (with hop-count 8),
/// so a well-formed chain has at most `HOP_COUNT_LIMIT + 1` Relay-Forward envelopes;
/// [`AnyView::innermost`] rejects deeper nesting with [`DecodeError::TooDeep`].
pub const HOP_COUNT_LIMIT: u8 = 8;

/// Octets before the options of a client/server message: msg-type and transaction-id.
const MESSAGE_HEADER: usize = 4;
/// Octets before the options of a relay message: msg-type, hop-count, link and peer address.
const RELAY_HEADER: usize = 34;

fn is_relay(msg_type: u8) -> bool {
    msg_type == v6msg::RELAY_FORW || msg_type == v6msg::RELAY_REPL
}

/// One option as it sits in the buffer: its code and its payload (without the 4-octet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawOption<'a> {
    /// The option code.
    pub code: u16,
    /// The payload, without the code and length octets.
    pub data: &'a [u8],
}

/// The parts of OPTION_LQ_QUERY (RFC 5007 §4.1.2.1), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LqQueryView<'a> {
    /// QUERY_BY_ADDRESS (1) ... QUERY_BY_REMOTE_ID (5), see [`crate::proto::codes::query_type`].
    pub query_type: u8,
    /// The link to search, `::` for all links.
    pub link_address: Ipv6Addr,
    /// The query-options (for example OPTION_IAADDR, OPTION_RELAY_ID, an ORO).
    pub options: OptionsView<'a>,
}

impl<'a> RawOption<'a> {
    /// The borrowed view of the DHCPv4 message inside an OPTION_DHCPV4_MSG (87, RFC 7341 §7.1);
    /// `BadOptionValue` for any other option.
    pub fn dhcpv4_view(&self) -> Result<crate::proto::v4::MessageView<'a>, DecodeError> {
        if self.code != crate::proto::codes::v6opt::DHCPV4_MSG {
            return Err(DecodeError::BadOptionValue { code: self.code });
        }
        crate::proto::v4::MessageView::parse(self.data)
    }

    /// The owned, typed option, with every length rule of its code checked (nested options
    /// included).
    pub fn typed(&self) -> Result<V6Option, DecodeError> {
        V6Option::decode(self.code, self.data, 0)
    }

    /// The payload as a 4-octet big-endian number (CLT_TIME, LQ_BASE/START/END_TIME);
    /// another length is [`DecodeError::BadOptionLength`].
    pub fn u32_value(&self) -> Result<u32, DecodeError> {
        option::exact_u32(self.code, self.data)
    }

    /// The options nested in this option: after the 12-octet header of IA_NA/IA_PD, the
    /// 24 octets of IAADDR, the 25 of IAPREFIX, the 17 of LQ_QUERY, the variable header of
    /// S46_V4V6BIND, or the whole payload of CLIENT_DATA and S46_CONT_LW. Any other code is
    /// [`DecodeError::BadOptionValue`] (it does not carry options).
    pub fn nested(&self) -> Result<OptionsView<'a>, DecodeError> {
        let code = self.code;
        let header = match code {
            v6opt::IA_NA | v6opt::IA_PD => 12,
            v6opt::IAADDR => 24,
            v6opt::IAPREFIX => 25,
            v6opt::LQ_QUERY => 17,
            v6opt::CLIENT_DATA | v6opt::S46_CONT_LW => 0,
            v6opt::S46_V4V6BIND => {
                let rest = self.data.get(4..).unwrap_or_default();
                let (_, _, after) = option::take_prefix(code, rest, self.data.len())?;
                self.data.len() - after.len()
            }
            _ => return Err(DecodeError::BadOptionValue { code }),
        };
        let rest = self
            .data
            .get(header..)
            .ok_or(DecodeError::BadOptionLength {
                code,
                len: self.data.len(),
            })?;
        OptionsView::new(rest)
    }

    /// OPTION_LQ_QUERY's query-type, link-address and query-options. Another code is
    /// [`DecodeError::BadOptionValue`], a payload under 17 octets
    /// [`DecodeError::BadOptionLength`].
    pub fn lq_query(&self) -> Result<LqQueryView<'a>, DecodeError> {
        if self.code != v6opt::LQ_QUERY {
            return Err(DecodeError::BadOptionValue { code: self.code });
        }
        let (h, _) = self
            .data
            .split_first_chunk::<17>()
            .ok_or(DecodeError::BadOptionLength {
                code: self.code,
                len: self.data.len(),
            })?;
        Ok(LqQueryView {
            query_type: h[0],
            link_address: option::ipv6_at(h, 1),
            options: self.nested()?,
        })
    }

    /// The option codes of an OPTION_ORO; an odd length is [`DecodeError::BadOptionLength`].
    pub fn oro(&self) -> Result<impl Iterator<Item = u16> + 'a, DecodeError> {
        if self.data.len() % 2 != 0 {
            return Err(DecodeError::BadOptionLength {
                code: self.code,
                len: self.data.len(),
            });
        }
        Ok(self
            .data
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]])))
    }
}

/// A validated DHCPv6 option list (RFC 8415 §21.1): every option's 4-octet header and
/// announced payload are inside the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptionsView<'a> {
    bytes: &'a [u8],
}

/// Iterator over an [`OptionsView`], in wire order.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = RawOption<'a>;

    fn next(&mut self) -> Option<RawOption<'a>> {
        let (opt, rest) = split_option(self.rest).ok()??;
        self.rest = rest;
        Some(opt)
    }
}

/// The first option and the rest, `None` at the end; or (offset, octets needed).
type Split<'a> = Result<Option<(RawOption<'a>, &'a [u8])>, (usize, usize)>;

/// Splits the first option off `buf`: `Ok(None)` at the end, `Err((offset, needed))` when the
/// header or the payload is cut short.
fn split_option(buf: &[u8]) -> Split<'_> {
    if buf.is_empty() {
        return Ok(None);
    }
    let (&[c0, c1, l0, l1], body) = buf
        .split_first_chunk::<4>()
        .ok_or_else(|| (0, 4 - buf.len()))?;
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let (data, rest) = body
        .split_at_checked(len)
        .ok_or_else(|| (4, len - body.len()))?;
    Ok(Some((
        RawOption {
            code: u16::from_be_bytes([c0, c1]),
            data,
        },
        rest,
    )))
}

impl<'a> OptionsView<'a> {
    /// Walks `bytes` once; an option cut short is [`DecodeError::Truncated`] (offsets within
    /// `bytes`).
    pub fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        Self::at(bytes, 0)
    }

    /// Like [`OptionsView::new`], reporting offsets as if `bytes` began at `base`.
    fn at(bytes: &'a [u8], base: usize) -> Result<Self, DecodeError> {
        let mut rest = bytes;
        loop {
            match split_option(rest) {
                Ok(None) => return Ok(OptionsView { bytes }),
                Ok(Some((_, next))) => rest = next,
                Err((off, needed)) => {
                    let at = base + (bytes.len() - rest.len()) + off;
                    return Err(DecodeError::Truncated { at, needed });
                }
            }
        }
    }

    /// The options in wire order, repeats kept.
    pub fn iter(&self) -> OptionsIter<'a> {
        OptionsIter { rest: self.bytes }
    }

    /// The first option with this code.
    pub fn get(&self, code: u16) -> Option<RawOption<'a>> {
        self.iter().find(|o| o.code == code)
    }

    /// Every option with this code, in wire order.
    pub fn all(&self, code: u16) -> impl Iterator<Item = RawOption<'a>> {
        self.iter().filter(move |o| o.code == code)
    }

    /// The raw option list.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// True when there are no options.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// A client/server message (RFC 8415 §8), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// The msg-type octet.
    pub msg_type: u8,
    /// The 24-bit transaction-id (for DHCPV4-QUERY/RESPONSE: the RFC 7341 flags field).
    pub xid: u32,
    options: OptionsView<'a>,
}

impl<'a> MessageView<'a> {
    /// Parses a client/server message. A relay type (12, 13) is
    /// [`DecodeError::UnexpectedMessageType`]; fewer than 4 octets or a cut option is
    /// [`DecodeError::Truncated`]. Any other type is accepted: which types are legal on a
    /// connection is the caller's decision.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (&[msg_type, x0, x1, x2], opts) = bytes
            .split_first_chunk::<MESSAGE_HEADER>()
            .ok_or_else(|| DecodeError::Truncated {
                at: 0,
                needed: MESSAGE_HEADER - bytes.len(),
            })?;
        if is_relay(msg_type) {
            return Err(DecodeError::UnexpectedMessageType(msg_type));
        }
        Ok(MessageView {
            msg_type,
            xid: u32::from_be_bytes([0, x0, x1, x2]),
            options: OptionsView::at(opts, MESSAGE_HEADER)?,
        })
    }

    /// The message's options.
    pub fn options(&self) -> OptionsView<'a> {
        self.options
    }
}

/// A Relay-Forward or Relay-Reply message (RFC 8415 §9), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayView<'a> {
    /// RELAY-FORW (12) or RELAY-REPL (13).
    pub msg_type: u8,
    /// Relays the message passed through before this one.
    pub hop_count: u8,
    /// The link of the client (RFC 8415 §9), or `::`.
    pub link_address: Ipv6Addr,
    /// The address of the client or relay the message came from or goes to.
    pub peer_address: Ipv6Addr,
    options: OptionsView<'a>,
}

impl<'a> RelayView<'a> {
    /// Parses a relay message. A type other than 12 or 13 is
    /// [`DecodeError::UnexpectedMessageType`]; fewer than 34 octets or a cut option is
    /// [`DecodeError::Truncated`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let (h, opts) =
            bytes
                .split_first_chunk::<RELAY_HEADER>()
                .ok_or_else(|| DecodeError::Truncated {
                    at: 0,
                    needed: RELAY_HEADER - bytes.len(),
                })?;
        if !is_relay(h[0]) {
            return Err(DecodeError::UnexpectedMessageType(h[0]));
        }
        Ok(RelayView {
            msg_type: h[0],
            hop_count: h[1],
            link_address: option::ipv6_at(h, 2),
            peer_address: option::ipv6_at(h, 18),
            options: OptionsView::at(opts, RELAY_HEADER)?,
        })
    }

    /// The relay's options.
    pub fn options(&self) -> OptionsView<'a> {
        self.options
    }

    /// The message inside OPTION_RELAY_MSG (client or relay format). A relay message without
    /// one is [`DecodeError::BadOptionValue`] with code 9.
    pub fn relay_msg(&self) -> Result<AnyView<'a>, DecodeError> {
        let inner = self
            .options
            .get(v6opt::RELAY_MSG)
            .ok_or(DecodeError::BadOptionValue {
                code: v6opt::RELAY_MSG,
            })?;
        AnyView::parse(inner.data)
    }
}

/// Any DHCPv6 message, its format chosen by msg-type (12 and 13 are relay format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyView<'a> {
    /// A client/server message (any type other than 12 and 13).
    Message(MessageView<'a>),
    /// A Relay-Forward or Relay-Reply message.
    Relay(RelayView<'a>),
}

impl<'a> AnyView<'a> {
    /// Parses a message of either format.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            Some(&t) if is_relay(t) => RelayView::parse(bytes).map(AnyView::Relay),
            _ => MessageView::parse(bytes).map(AnyView::Message),
        }
    }

    /// The msg-type octet.
    pub fn msg_type(&self) -> u8 {
        match self {
            AnyView::Message(m) => m.msg_type,
            AnyView::Relay(r) => r.msg_type,
        }
    }

    /// The top-level options.
    pub fn options(&self) -> OptionsView<'a> {
        match self {
            AnyView::Message(m) => m.options,
            AnyView::Relay(r) => r.options,
        }
    }

    /// Follows OPTION_RELAY_MSG down to the client/server message. More than
    /// `HOP_COUNT_LIMIT + 1` relay envelopes is [`DecodeError::TooDeep`].
    pub fn innermost(&self) -> Result<MessageView<'a>, DecodeError> {
        let mut current = *self;
        for _ in 0..=HOP_COUNT_LIMIT {
            match current {
                AnyView::Message(m) => return Ok(m),
                AnyView::Relay(r) => current = r.relay_msg()?,
            }
        }
        match current {
            AnyView::Message(m) => Ok(m),
            AnyView::Relay(_) => Err(DecodeError::TooDeep),
        }
    }
}

fn decode_options(view: OptionsView<'_>) -> Result<Vec<V6Option>, DecodeError> {
    view.iter().map(|o| o.typed()).collect()
}

/// A client/server message (RFC 8415 §8), owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The msg-type octet; not 12 or 13.
    pub msg_type: u8,
    /// 24-bit transaction-id; a wider value cannot be encoded.
    pub xid: u32,
    /// Options in wire order, repeats kept.
    pub options: Vec<V6Option>,
}

impl Message {
    /// Decodes a client/server message, checking every option (see [`MessageView::parse`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let v = MessageView::parse(bytes)?;
        Ok(Message {
            msg_type: v.msg_type,
            xid: v.xid,
            options: decode_options(v.options)?,
        })
    }

    /// Octets on the wire.
    pub fn encoded_len(&self) -> usize {
        MESSAGE_HEADER + option::list_len(&self.options)
    }

    /// Appends the message to `out`. A relay msg-type or an xid over 24 bits is
    /// [`EncodeError::Invalid`]; option errors as in [`V6Option::encode`]. On error `out` is
    /// left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if is_relay(self.msg_type) {
            return Err(EncodeError::Invalid(
                "relay msg-type in a client/server message",
            ));
        }
        let [x_hi, x0, x1, x2] = self.xid.to_be_bytes();
        if x_hi != 0 {
            return Err(EncodeError::Invalid("transaction-id wider than 24 bits"));
        }
        let start = out.len();
        out.reserve(self.encoded_len());
        out.extend_from_slice(&[self.msg_type, x0, x1, x2]);
        option::encode_list(&self.options, out).inspect_err(|_| out.truncate(start))
    }
}

/// A Relay-Forward or Relay-Reply message (RFC 8415 §9), owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayMessage {
    /// RELAY-FORW (12) or RELAY-REPL (13).
    pub msg_type: u8,
    /// Relays the message passed through before this one.
    pub hop_count: u8,
    /// The link of the client (RFC 8415 §9), or `::`.
    pub link_address: Ipv6Addr,
    /// The address of the client or relay the message came from or goes to.
    pub peer_address: Ipv6Addr,
    /// Options in wire order, repeats kept; OPTION_RELAY_MSG holds the raw inner message.
    pub options: Vec<V6Option>,
}

impl RelayMessage {
    /// Decodes a relay message, checking every option (see [`RelayView::parse`]).
    /// OPTION_RELAY_MSG stays raw bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let v = RelayView::parse(bytes)?;
        Ok(RelayMessage {
            msg_type: v.msg_type,
            hop_count: v.hop_count,
            link_address: v.link_address,
            peer_address: v.peer_address,
            options: decode_options(v.options)?,
        })
    }

    /// Octets on the wire.
    pub fn encoded_len(&self) -> usize {
        RELAY_HEADER + option::list_len(&self.options)
    }

    /// Appends the message to `out`. A msg-type other than 12 or 13 is
    /// [`EncodeError::Invalid`]; option errors as in [`V6Option::encode`]. On error `out` is
    /// left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !is_relay(self.msg_type) {
            return Err(EncodeError::Invalid("client msg-type in a relay message"));
        }
        let start = out.len();
        out.reserve(self.encoded_len());
        out.extend_from_slice(&[self.msg_type, self.hop_count]);
        out.extend_from_slice(&self.link_address.octets());
        out.extend_from_slice(&self.peer_address.octets());
        option::encode_list(&self.options, out).inspect_err(|_| out.truncate(start))
    }
}
