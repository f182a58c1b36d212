//! DHCPv4 messages (RFC 2131 §2, RFC 2132): the BOOTP layout, the magic cookie and the options
//! that DHCPv4 leasequery uses (RFC 4388, RFC 6926, RFC 7724, RFC 7618, RFC 8539).
//!
//! Two forms:
//! - [`MessageView`] borrows a buffer: [`MessageView::parse`] checks the header, the cookie and
//!   the option TLVs up to END, and the accessors read options without allocating (except to
//!   join the instances of a split option).
//! - [`Message`] is the owned form with typed [`V4Option`]s, for building replies and for tests.
//!
//! Rules this module applies:
//! - Long options (RFC 3396): on decode every instance of a code is joined in wire order, whether
//!   the instances are consecutive or not (§7); the joined option takes the place of its first
//!   instance. On encode a value over 255 octets is split into consecutive instances.
//! - Option overload (option 52, RFC 2132 §9.3) is **not supported**: leasequery traffic never
//!   uses it, so a message carrying option 52 is rejected ([`DecodeError::BadOptionValue`]) rather
//!   than read with options hidden in `sname`/`file`. `sname` and `file` are kept as raw octets.
//! - END is required: an option list that runs out without END is [`DecodeError::MissingEnd`].
//!   Octets after END (padding) are ignored.
//! - Relay agent information (82) is written last, just before END (RFC 3046 §2.1).

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::proto::codes::{v4opt, v4relay, MAGIC_COOKIE};
use crate::proto::record::PortParams;
use crate::proto::{DecodeError, EncodeError};

/// Length of the fixed BOOTP header (op .. file), RFC 2131 §2.
pub const HEADER_LEN: usize = 236;
/// Length of the header plus the magic cookie: the shortest possible DHCPv4 message.
pub const MIN_LEN: usize = HEADER_LEN + 4;
/// The longest message this codec encodes (the TCP frame limit, RFC 6926 §6.1).
pub const MAX_LEN: usize = u16::MAX as usize;

const CHADDR_AT: usize = 28;
const SNAME_AT: usize = 44;
const FILE_AT: usize = 108;

/// `N` octets of `buf` at `at` (zeros if out of range; callers have checked the length).
fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

/// A parsed, borrowed DHCPv4 message: header fields as values, options left in the buffer.
///
/// Built by [`MessageView::parse`], which has already checked every option TLV, so the option
/// accessors cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// BOOTP `op`: 1 BOOTREQUEST, 2 BOOTREPLY.
    pub op: u8,
    /// Hardware address type.
    pub htype: u8,
    /// Hardware address length (at most 16).
    pub hlen: u8,
    /// Relay hops.
    pub hops: u8,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags (0x8000 = broadcast).
    pub flags: u16,
    /// Client address (the leased address in leasequery replies, RFC 4388 §6.4).
    pub ciaddr: Ipv4Addr,
    /// "Your" address.
    pub yiaddr: Ipv4Addr,
    /// Next server address.
    pub siaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// The client hardware address: exactly `hlen` octets.
    pub chaddr: &'a [u8],
    /// The 64-octet `sname` field, raw.
    pub sname: &'a [u8],
    /// The 128-octet `file` field, raw.
    pub file: &'a [u8],
    /// The option area after the cookie, up to (not including) END.
    opts: &'a [u8],
}

impl<'a> MessageView<'a> {
    /// Parse and check a DHCPv4 message (RFC 2131 §2, §3): at least 240 octets, `hlen` at most
    /// 16, the magic cookie, well-formed option TLVs ending with END, and no option overload.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let (Some(header), Some(rest)) = (buf.get(..HEADER_LEN), buf.get(MIN_LEN..)) else {
            return Err(DecodeError::Truncated {
                at: buf.len(),
                needed: MIN_LEN.saturating_sub(buf.len()),
            });
        };
        let [op, htype, hlen, hops] = array::<4>(header, 0);
        if hlen > 16 {
            return Err(DecodeError::BadHlen(hlen));
        }
        if buf.get(HEADER_LEN..MIN_LEN) != Some(&MAGIC_COOKIE[..]) {
            return Err(DecodeError::BadMagicCookie);
        }
        let opts = scan_options(rest)?;
        let view = MessageView {
            op,
            htype,
            hlen,
            hops,
            xid: u32::from_be_bytes(array(header, 4)),
            secs: u16::from_be_bytes(array(header, 8)),
            flags: u16::from_be_bytes(array(header, 10)),
            ciaddr: Ipv4Addr::from(u32::from_be_bytes(array(header, 12))),
            yiaddr: Ipv4Addr::from(u32::from_be_bytes(array(header, 16))),
            siaddr: Ipv4Addr::from(u32::from_be_bytes(array(header, 20))),
            giaddr: Ipv4Addr::from(u32::from_be_bytes(array(header, 24))),
            chaddr: header
                .get(CHADDR_AT..CHADDR_AT + hlen as usize)
                .unwrap_or_default(),
            sname: header.get(SNAME_AT..FILE_AT).unwrap_or_default(),
            file: header.get(FILE_AT..HEADER_LEN).unwrap_or_default(),
            opts,
        };
        if view.has_option(v4opt::OVERLOAD) {
            return Err(DecodeError::BadOptionValue {
                code: v4opt::OVERLOAD as u16,
            });
        }
        Ok(view)
    }

    /// The raw option instances in wire order, PAD skipped, END not included.
    pub fn options(&self) -> Options<'a> {
        Options { rest: self.opts }
    }

    /// Whether at least one instance of option `code` is present.
    pub fn has_option(&self, code: u8) -> bool {
        self.options().any(|(c, _)| c == code)
    }

    /// The value of option `code`: all its instances joined in wire order (RFC 3396 §7).
    /// Borrowed from the buffer when there is a single instance.
    pub fn option(&self, code: u8) -> Option<Cow<'a, [u8]>> {
        let mut found: Option<Cow<'a, [u8]>> = None;
        for (c, value) in self.options() {
            if c != code {
                continue;
            }
            match &mut found {
                None => found = Some(Cow::Borrowed(value)),
                Some(joined) => joined.to_mut().extend_from_slice(value),
            }
        }
        found
    }

    /// The DHCP message type (option 53, RFC 2132 §9.6), if present with length 1.
    pub fn message_type(&self) -> Option<u8> {
        match self.option(v4opt::MESSAGE_TYPE)?.as_ref() {
            &[t] => Some(t),
            _ => None,
        }
    }
}

/// Check the option TLVs of `area` (after the cookie) and return the part before END.
fn scan_options(area: &[u8]) -> Result<&[u8], DecodeError> {
    let mut at = 0;
    loop {
        match area.get(at) {
            None => return Err(DecodeError::MissingEnd),
            Some(&v4opt::END) => return Ok(area.get(..at).unwrap_or_default()),
            Some(&v4opt::PAD) => at += 1,
            Some(_) => {
                let Some(&len) = area.get(at + 1) else {
                    return Err(DecodeError::Truncated {
                        at: MIN_LEN + at + 1,
                        needed: 1,
                    });
                };
                let end = at + 2 + len as usize;
                if end > area.len() {
                    return Err(DecodeError::Truncated {
                        at: MIN_LEN + area.len(),
                        needed: end - area.len(),
                    });
                }
                at = end;
            }
        }
    }
}

/// Iterator over the raw option instances of a [`MessageView`]: `(code, value)` in wire order.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match *self.rest {
                [v4opt::PAD, ref tail @ ..] => self.rest = tail,
                [code, len, ref tail @ ..] if code != v4opt::END => {
                    let (value, tail) = tail.split_at_checked(len as usize)?;
                    self.rest = tail;
                    return Some((code, value));
                }
                _ => return None,
            }
        }
    }
}

/// A client identifier (option 61, RFC 2132 §9.14, RFC 4361 §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// Type 255: an RFC 4361 node-specific identifier, IAID and DUID. The DUID must hold at
    /// least its 2-octet type, so the option is at least 7 octets long.
    Rfc4361 { iaid: u32, duid: Vec<u8> },
    /// Any other type: a hardware type (or 0) and at least one octet of identifier (RFC 2132
    /// gives the option a minimum length of 2).
    Other { htype: u8, id: Vec<u8> },
}

impl ClientId {
    /// Parse an option 61 value.
    pub fn decode(value: &[u8]) -> Result<ClientId, DecodeError> {
        let bad = DecodeError::BadOptionLength {
            code: v4opt::CLIENT_ID as u16,
            len: value.len(),
        };
        match value {
            [255, a, b, c, d, duid @ ..] if duid.len() >= 2 => Ok(ClientId::Rfc4361 {
                iaid: u32::from_be_bytes([*a, *b, *c, *d]),
                duid: duid.to_vec(),
            }),
            [255, ..] => Err(bad),
            [htype, id @ ..] if !id.is_empty() => Ok(ClientId::Other {
                htype: *htype,
                id: id.to_vec(),
            }),
            _ => Err(bad),
        }
    }

    fn check(&self) -> Result<(), EncodeError> {
        match self {
            ClientId::Rfc4361 { duid, .. } if duid.len() < 2 => {
                Err(EncodeError::Invalid("client-id DUID under 2 octets"))
            }
            ClientId::Other { htype: 255, .. } => {
                Err(EncodeError::Invalid("client-id type 255 is RFC 4361"))
            }
            ClientId::Other { id, .. } if id.is_empty() => {
                Err(EncodeError::Invalid("empty client-id"))
            }
            _ => Ok(()),
        }
    }

    fn value_len(&self) -> usize {
        match self {
            ClientId::Rfc4361 { duid, .. } => 5 + duid.len(),
            ClientId::Other { id, .. } => 1 + id.len(),
        }
    }

    /// Append the option 61 value (type octet first).
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            ClientId::Rfc4361 { iaid, duid } => {
                out.push(255);
                out.extend_from_slice(&iaid.to_be_bytes());
                out.extend_from_slice(duid);
            }
            ClientId::Other { htype, id } => {
                out.push(*htype);
                out.extend_from_slice(id);
            }
        }
    }
}

/// Relay agent information (option 82, RFC 3046 §2.0): its sub-options in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RelayAgentInfo {
    /// `(sub-option code, value)` pairs in wire order; each value at most 255 octets.
    pub sub_options: Vec<(u8, Vec<u8>)>,
}

impl RelayAgentInfo {
    /// Parse an option 82 value. A sub-option running past the end is
    /// [`DecodeError::BadOptionValue`].
    pub fn decode(value: &[u8]) -> Result<RelayAgentInfo, DecodeError> {
        let mut sub_options = Vec::new();
        for sub in (SubOptions { rest: value }) {
            let (code, data) = sub?;
            sub_options.push((code, data.to_vec()));
        }
        Ok(RelayAgentInfo { sub_options })
    }

    /// The first sub-option `code` of an option 82 value, without copying.
    pub fn find(value: &[u8], code: u8) -> Result<Option<&[u8]>, DecodeError> {
        for sub in (SubOptions { rest: value }) {
            let (c, data) = sub?;
            if c == code {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// The first sub-option with `code`.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.sub_options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// Agent circuit-id, sub-option 1 (RFC 3046 §3.1).
    pub fn circuit_id(&self) -> Option<&[u8]> {
        self.get(v4relay::CIRCUIT_ID)
    }

    /// Agent remote-id, sub-option 2 (RFC 3046 §3.2).
    pub fn remote_id(&self) -> Option<&[u8]> {
        self.get(v4relay::REMOTE_ID)
    }

    /// Relay-id, sub-option 12 (RFC 6925 §4).
    pub fn relay_id(&self) -> Option<&[u8]> {
        self.get(v4relay::RELAY_ID)
    }

    fn value_len(&self) -> usize {
        self.sub_options.iter().map(|(_, v)| 2 + v.len()).sum()
    }
}

struct SubOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SubOptions<'a> {
    type Item = Result<(u8, &'a [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let bad = DecodeError::BadOptionValue {
            code: v4opt::RELAY_AGENT_INFO as u16,
        };
        match *self.rest {
            [] => None,
            [code, len, ref tail @ ..] => match tail.split_at_checked(len as usize) {
                Some((data, tail)) => {
                    self.rest = tail;
                    Some(Ok((code, data)))
                }
                None => {
                    self.rest = &[];
                    Some(Err(bad))
                }
            },
            [_] => {
                self.rest = &[];
                Some(Err(bad))
            }
        }
    }
}

/// A DHCPv4 option, typed for the codes leasequery uses; every other code is [`V4Option::Unknown`].
///
/// Decoding ([`V4Option::decode`]) takes the joined value of all instances of a code. Any wrong
/// length for a fixed-size option is [`DecodeError::BadOptionLength`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum V4Option {
    /// 1 Subnet Mask (RFC 2132 §3.3).
    SubnetMask(Ipv4Addr),
    /// 50 Requested IP Address (RFC 2132 §9.1).
    RequestedIp(Ipv4Addr),
    /// 51 IP Address Lease Time, seconds (RFC 2132 §9.2).
    LeaseTime(u32),
    /// 53 DHCP Message Type (RFC 2132 §9.6, RFC 4388 §6.1, RFC 6926 §6.2.1, RFC 7724 §5.2).
    MessageType(u8),
    /// 54 Server Identifier (RFC 2132 §9.7).
    ServerId(Ipv4Addr),
    /// 55 Parameter Request List (RFC 2132 §9.8).
    ParameterRequestList(Vec<u8>),
    /// 58 Renewal (T1) Time, seconds (RFC 2132 §9.11).
    RenewalTime(u32),
    /// 59 Rebinding (T2) Time, seconds (RFC 2132 §9.12).
    RebindingTime(u32),
    /// 61 Client Identifier (RFC 2132 §9.14, RFC 4361 §6.1).
    ClientId(ClientId),
    /// 82 Relay Agent Information (RFC 3046).
    RelayAgentInfo(RelayAgentInfo),
    /// 91 client-last-transaction-time, seconds ago (RFC 4388 §6.1).
    ClientLastTransactionTime(u32),
    /// 92 associated-ip, one or more addresses (RFC 4388 §6.1).
    AssociatedIp(Vec<Ipv4Addr>),
    /// 109 OPTION_DHCP4O6_S46_SADDR, the softwire source address (RFC 8539 §5.1).
    Dhcp4o6SoftwireSource(Ipv6Addr),
    /// 151 status-code: status and UTF-8 text without NUL (RFC 6926 §6.2.2).
    StatusCode { code: u8, message: String },
    /// 152 base-time, absolute seconds since 1970 (RFC 6926 §6.2.3).
    BaseTime(u32),
    /// 153 start-time-of-state (RFC 6926 §6.2.4).
    StartTimeOfState(u32),
    /// 154 query-start-time (RFC 6926 §6.2.5).
    QueryStartTime(u32),
    /// 155 query-end-time (RFC 6926 §6.2.6).
    QueryEndTime(u32),
    /// 156 dhcp-state (RFC 6926 §6.2.7).
    DhcpState(u8),
    /// 157 data-source flags (RFC 6926 §6.2.8).
    DataSource(u8),
    /// 159 OPTION_V4_PORTPARAMS: offset, PSID length, left-aligned PSID (RFC 7618 §4).
    V4PortParams(PortParams),
    /// 221 Virtual Subnet Selection: type and identifier (RFC 6607 §3.1).
    Vss { kind: u8, id: Vec<u8> },
    /// Any other code, raw. Encoding refuses PAD, END and OVERLOAD (52); a typed code written
    /// this way is sent as-is (useful to test peers) but decodes as its typed variant.
    Unknown { code: u8, data: Vec<u8> },
}

fn fixed<const N: usize>(code: u8, value: &[u8]) -> Result<[u8; N], DecodeError> {
    value.try_into().map_err(|_| DecodeError::BadOptionLength {
        code: code as u16,
        len: value.len(),
    })
}

impl V4Option {
    /// The option code.
    pub fn code(&self) -> u8 {
        use V4Option::*;
        match self {
            SubnetMask(_) => v4opt::SUBNET_MASK,
            RequestedIp(_) => v4opt::REQUESTED_IP,
            LeaseTime(_) => v4opt::LEASE_TIME,
            MessageType(_) => v4opt::MESSAGE_TYPE,
            ServerId(_) => v4opt::SERVER_ID,
            ParameterRequestList(_) => v4opt::PARAMETER_REQUEST_LIST,
            RenewalTime(_) => v4opt::RENEWAL_TIME,
            RebindingTime(_) => v4opt::REBINDING_TIME,
            ClientId(_) => v4opt::CLIENT_ID,
            RelayAgentInfo(_) => v4opt::RELAY_AGENT_INFO,
            ClientLastTransactionTime(_) => v4opt::CLIENT_LAST_TRANSACTION_TIME,
            AssociatedIp(_) => v4opt::ASSOCIATED_IP,
            Dhcp4o6SoftwireSource(_) => v4opt::DHCP4O6_S46_SADDR,
            StatusCode { .. } => v4opt::STATUS_CODE,
            BaseTime(_) => v4opt::BASE_TIME,
            StartTimeOfState(_) => v4opt::START_TIME_OF_STATE,
            QueryStartTime(_) => v4opt::QUERY_START_TIME,
            QueryEndTime(_) => v4opt::QUERY_END_TIME,
            DhcpState(_) => v4opt::DHCP_STATE,
            DataSource(_) => v4opt::DATA_SOURCE,
            V4PortParams(_) => v4opt::V4_PORTPARAMS,
            Vss { .. } => v4opt::VSS,
            Unknown { code, .. } => *code,
        }
    }

    /// Decode the (joined) value of option `code`.
    pub fn decode(code: u8, value: &[u8]) -> Result<V4Option, DecodeError> {
        use V4Option::*;
        let bad_len = DecodeError::BadOptionLength {
            code: code as u16,
            len: value.len(),
        };
        let bad_value = DecodeError::BadOptionValue { code: code as u16 };
        let u32_of = |v: &[u8]| fixed::<4>(code, v).map(u32::from_be_bytes);
        let ip_of = |v: &[u8]| fixed::<4>(code, v).map(Ipv4Addr::from);
        let u8_of = |v: &[u8]| fixed::<1>(code, v).map(|[b]| b);
        Ok(match code {
            v4opt::SUBNET_MASK => SubnetMask(ip_of(value)?),
            v4opt::REQUESTED_IP => RequestedIp(ip_of(value)?),
            v4opt::LEASE_TIME => LeaseTime(u32_of(value)?),
            v4opt::MESSAGE_TYPE => MessageType(u8_of(value)?),
            v4opt::SERVER_ID => ServerId(ip_of(value)?),
            v4opt::PARAMETER_REQUEST_LIST => ParameterRequestList(value.to_vec()),
            v4opt::RENEWAL_TIME => RenewalTime(u32_of(value)?),
            v4opt::REBINDING_TIME => RebindingTime(u32_of(value)?),
            v4opt::CLIENT_ID => ClientId(self::ClientId::decode(value)?),
            v4opt::RELAY_AGENT_INFO => RelayAgentInfo(self::RelayAgentInfo::decode(value)?),
            v4opt::CLIENT_LAST_TRANSACTION_TIME => ClientLastTransactionTime(u32_of(value)?),
            v4opt::ASSOCIATED_IP => {
                if value.is_empty() || value.len() % 4 != 0 {
                    return Err(bad_len);
                }
                AssociatedIp(value.chunks_exact(4).map(ip_of).collect::<Result<_, _>>()?)
            }
            v4opt::DHCP4O6_S46_SADDR => {
                Dhcp4o6SoftwireSource(Ipv6Addr::from(fixed::<16>(code, value)?))
            }
            v4opt::STATUS_CODE => {
                let [status, text @ ..] = value else {
                    return Err(bad_len);
                };
                let message = std::str::from_utf8(text).map_err(|_| bad_value)?;
                if message.contains('\0') {
                    return Err(bad_value);
                }
                StatusCode {
                    code: *status,
                    message: message.to_owned(),
                }
            }
            v4opt::BASE_TIME => BaseTime(u32_of(value)?),
            v4opt::START_TIME_OF_STATE => StartTimeOfState(u32_of(value)?),
            v4opt::QUERY_START_TIME => QueryStartTime(u32_of(value)?),
            v4opt::QUERY_END_TIME => QueryEndTime(u32_of(value)?),
            v4opt::DHCP_STATE => DhcpState(u8_of(value)?),
            v4opt::DATA_SOURCE => DataSource(u8_of(value)?),
            v4opt::V4_PORTPARAMS => {
                let [offset, psid_len, a, b] = fixed::<4>(code, value)?;
                V4PortParams(
                    PortParams::from_wire(offset, psid_len, u16::from_be_bytes([a, b]))
                        .ok_or(bad_value)?,
                )
            }
            v4opt::VSS => {
                let [kind, id @ ..] = value else {
                    return Err(bad_len);
                };
                Vss {
                    kind: *kind,
                    id: id.to_vec(),
                }
            }
            _ => Unknown {
                code,
                data: value.to_vec(),
            },
        })
    }

    /// The length of the encoded value (before any RFC 3396 split).
    pub fn value_len(&self) -> usize {
        use V4Option::*;
        match self {
            MessageType(_) | DhcpState(_) | DataSource(_) => 1,
            SubnetMask(_)
            | RequestedIp(_)
            | LeaseTime(_)
            | ServerId(_)
            | RenewalTime(_)
            | RebindingTime(_)
            | ClientLastTransactionTime(_)
            | BaseTime(_)
            | StartTimeOfState(_)
            | QueryStartTime(_)
            | QueryEndTime(_)
            | V4PortParams(_) => 4,
            Dhcp4o6SoftwireSource(_) => 16,
            ParameterRequestList(v) => v.len(),
            ClientId(id) => id.value_len(),
            RelayAgentInfo(info) => info.value_len(),
            AssociatedIp(ips) => 4 * ips.len(),
            StatusCode { message, .. } => 1 + message.len(),
            Vss { id, .. } => 1 + id.len(),
            Unknown { data, .. } => data.len(),
        }
    }

    /// The length on the wire: the value plus 2 octets per instance (RFC 3396 split at 255).
    pub fn encoded_len(&self) -> usize {
        let len = self.value_len();
        len + 2 * len.div_ceil(255).max(1)
    }

    /// Check that the value can be encoded so that it decodes back to itself.
    fn check(&self) -> Result<(), EncodeError> {
        use V4Option::*;
        match self {
            ClientId(id) => id.check(),
            RelayAgentInfo(info) if info.sub_options.iter().any(|(_, v)| v.len() > 255) => {
                Err(EncodeError::Invalid("option 82 sub-option over 255 octets"))
            }
            AssociatedIp(ips) if ips.is_empty() => Err(EncodeError::Invalid("empty associated-ip")),
            StatusCode { message, .. } if message.contains('\0') => {
                Err(EncodeError::Invalid("NUL in status message"))
            }
            V4PortParams(p)
                if PortParams::from_wire(p.offset, p.psid_len, p.wire_psid()) != Some(*p) =>
            {
                Err(EncodeError::Invalid("port parameters out of range"))
            }
            Unknown {
                code: v4opt::PAD | v4opt::END | v4opt::OVERLOAD,
                ..
            } => Err(EncodeError::Invalid(
                "PAD, END or option overload as an option",
            )),
            _ => Ok(()),
        }
    }

    /// Append the value octets (no code, no length).
    pub fn write_value(&self, out: &mut Vec<u8>) {
        use V4Option::*;
        match self {
            MessageType(v) | DhcpState(v) | DataSource(v) => out.push(*v),
            SubnetMask(ip) | RequestedIp(ip) | ServerId(ip) => out.extend_from_slice(&ip.octets()),
            LeaseTime(v)
            | RenewalTime(v)
            | RebindingTime(v)
            | ClientLastTransactionTime(v)
            | BaseTime(v)
            | StartTimeOfState(v)
            | QueryStartTime(v)
            | QueryEndTime(v) => out.extend_from_slice(&v.to_be_bytes()),
            Dhcp4o6SoftwireSource(ip) => out.extend_from_slice(&ip.octets()),
            ParameterRequestList(v) => out.extend_from_slice(v),
            ClientId(id) => id.write(out),
            RelayAgentInfo(info) => {
                for (code, v) in &info.sub_options {
                    out.push(*code);
                    out.push(v.len().min(255) as u8);
                    out.extend_from_slice(v);
                }
            }
            AssociatedIp(ips) => ips
                .iter()
                .for_each(|ip| out.extend_from_slice(&ip.octets())),
            StatusCode { code, message } => {
                out.push(*code);
                out.extend_from_slice(message.as_bytes());
            }
            V4PortParams(p) => {
                out.extend_from_slice(&[p.offset, p.psid_len]);
                out.extend_from_slice(&p.wire_psid().to_be_bytes());
            }
            Vss { kind, id } => {
                out.push(*kind);
                out.extend_from_slice(id);
            }
            Unknown { data, .. } => out.extend_from_slice(data),
        }
    }

    /// Append the whole option: code, length and value, split into consecutive instances of at
    /// most 255 octets when longer (RFC 3396 §6). On error nothing is written.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.check()?;
        let code = self.code();
        let len = self.value_len();
        if let Ok(short) = u8::try_from(len) {
            out.extend_from_slice(&[code, short]);
            self.write_value(out);
            return Ok(());
        }
        let mut value = Vec::with_capacity(len);
        self.write_value(&mut value);
        put_option(out, code, &value);
        Ok(())
    }
}

/// Append option `code` with a raw `value`, split into consecutive instances of at most 255
/// octets when longer (RFC 3396 §6); an empty value is one instance of length 0. For encoders
/// that write borrowed data without building a [`V4Option`]. `code` must not be PAD or END.
pub fn put_option(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    if value.is_empty() {
        out.extend_from_slice(&[code, 0]);
    }
    for chunk in value.chunks(255) {
        out.extend_from_slice(&[code, chunk.len() as u8]);
        out.extend_from_slice(chunk);
    }
}

/// An owned DHCPv4 message (RFC 2131 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// BOOTP `op`: 1 BOOTREQUEST, 2 BOOTREPLY.
    pub op: u8,
    /// Hardware address type.
    pub htype: u8,
    /// Hardware address length (at most 16).
    pub hlen: u8,
    /// Relay hops.
    pub hops: u8,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags (0x8000 = broadcast).
    pub flags: u16,
    /// Client address.
    pub ciaddr: Ipv4Addr,
    /// "Your" address.
    pub yiaddr: Ipv4Addr,
    /// Next server address.
    pub siaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// The whole 16-octet `chaddr` field; the hardware address is its first `hlen` octets
    /// ([`Message::hw_addr`]).
    pub chaddr: [u8; 16],
    /// The 64-octet `sname` field, raw.
    pub sname: Box<[u8; 64]>,
    /// The 128-octet `file` field, raw.
    pub file: Box<[u8; 128]>,
    /// Options in wire order, one per code (instances of a code are joined on decode). Option 82
    /// is always encoded last whatever its place here.
    pub options: Vec<V4Option>,
}

impl Message {
    /// A message with `op`, option 53 = `msg_type` and `xid`; every other field zero
    /// (htype 0, hlen 0, as leasequery server messages are built).
    pub fn new(op: u8, msg_type: u8, xid: u32) -> Message {
        Message {
            op,
            htype: 0,
            hlen: 0,
            hops: 0,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [0; 16],
            sname: Box::new([0; 64]),
            file: Box::new([0; 128]),
            options: vec![V4Option::MessageType(msg_type)],
        }
    }

    /// Set the hardware type and address (`hlen` = its length). Refuses more than 16 octets.
    pub fn set_hw_addr(&mut self, htype: u8, addr: &[u8]) -> Result<(), EncodeError> {
        let dst = self
            .chaddr
            .get_mut(..addr.len())
            .ok_or(EncodeError::Invalid("chaddr over 16 octets"))?;
        dst.copy_from_slice(addr);
        self.htype = htype;
        self.hlen = addr.len() as u8;
        Ok(())
    }

    /// The hardware address: the first `hlen` octets of `chaddr` (all 16 if `hlen` is above 16).
    pub fn hw_addr(&self) -> &[u8] {
        self.chaddr
            .get(..self.hlen as usize)
            .unwrap_or(&self.chaddr)
    }

    /// The DHCP message type (option 53), if present.
    pub fn message_type(&self) -> Option<u8> {
        self.options.iter().find_map(|o| match o {
            V4Option::MessageType(t) => Some(*t),
            _ => None,
        })
    }

    /// The first option with `code`.
    pub fn option(&self, code: u8) -> Option<&V4Option> {
        self.options.iter().find(|o| o.code() == code)
    }

    /// Decode a message: [`MessageView::parse`], then every code's joined value typed with
    /// [`V4Option::decode`], in the order of each code's first instance.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        let view = MessageView::parse(buf)?;
        // Join instances of a code (RFC 3396 §7) in one pass: `slot[code]` is the index of the
        // code's entry in `joined`.
        let mut slot = [usize::MAX; 256];
        let mut joined: Vec<(u8, Cow<'_, [u8]>)> = Vec::new();
        for (code, value) in view.options() {
            match joined.get_mut(slot[code as usize]) {
                Some((_, v)) => v.to_mut().extend_from_slice(value),
                None => {
                    slot[code as usize] = joined.len();
                    joined.push((code, Cow::Borrowed(value)));
                }
            }
        }
        let options = joined
            .iter()
            .map(|(code, v)| V4Option::decode(*code, v))
            .collect::<Result<_, _>>()?;
        Ok(Message {
            op: view.op,
            htype: view.htype,
            hlen: view.hlen,
            hops: view.hops,
            xid: view.xid,
            secs: view.secs,
            flags: view.flags,
            ciaddr: view.ciaddr,
            yiaddr: view.yiaddr,
            siaddr: view.siaddr,
            giaddr: view.giaddr,
            chaddr: array(buf, CHADDR_AT),
            sname: Box::new(array(buf, SNAME_AT)),
            file: Box::new(array(buf, FILE_AT)),
            options,
        })
    }

    /// The encoded length: header, cookie, options and END.
    pub fn encoded_len(&self) -> usize {
        MIN_LEN
            + self
                .options
                .iter()
                .map(V4Option::encoded_len)
                .sum::<usize>()
            + 1
    }

    /// Append the encoded message to `out`: header, cookie, options in order with option 82
    /// moved last (RFC 3046 §2.1), then END. On error nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.hlen > 16 {
            return Err(EncodeError::Invalid("hlen over 16"));
        }
        let len = self.encoded_len();
        if len > MAX_LEN {
            return Err(EncodeError::TooLong { len, max: MAX_LEN });
        }
        let start = out.len();
        out.reserve(len);
        out.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&self.secs.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        for addr in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            out.extend_from_slice(&addr.octets());
        }
        out.extend_from_slice(&self.chaddr);
        out.extend_from_slice(&self.sname[..]);
        out.extend_from_slice(&self.file[..]);
        out.extend_from_slice(&MAGIC_COOKIE);
        let is_82 = |o: &&V4Option| o.code() == v4opt::RELAY_AGENT_INFO;
        let ordered = self
            .options
            .iter()
            .filter(|o| !is_82(o))
            .chain(self.options.iter().filter(is_82));
        for option in ordered {
            if let Err(e) = option.encode(out) {
                out.truncate(start);
                return Err(e);
            }
        }
        out.push(v4opt::END);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
