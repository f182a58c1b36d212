//! The owned DHCPv6 option model ([`V6Option`]): typed decode with the length rules of each
//! code, and encode that never truncates.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::proto::codes::v6opt;
use crate::proto::error::{DecodeError, EncodeError};
use crate::proto::record::PortParams;

use super::OptionsView;

/// How many option levels may nest inside one another (an option inside OPTION_CLIENT_DATA
/// inside ... ). Real messages need 3 or 4 (CLIENT_DATA > IA_NA > IAADDR > STATUS_CODE); the
/// bound keeps decoding of hostile input from recursing deeply. Deeper input is
/// [`DecodeError::TooDeep`].
pub const MAX_OPTION_DEPTH: u8 = 8;

/// Largest option payload: the option-len field is 16 bits (RFC 8415 §21.1).
const MAX_OPTION_LEN: usize = 65535;

/// One DHCPv6 option, owned, for building messages. Options that carry options keep them in
/// wire order, repeats included. Codes without a typed variant (and codes this crate does not
/// interpret) are [`V6Option::Unknown`].
///
/// Prefix fields whose length is given by a prefix-length octet (OPTION_S46_V4V6BIND,
/// OPTION_S46_BIND_IPV6_PREFIX) carry only `ceil(prefix_len / 8)` octets on the wire; bits
/// beyond `prefix_len` are zeroed both on decode ("ignored by the receiver") and on encode
/// ("MUST be zero", RFC 7598 §4.1). OPTION_IAPREFIX carries a full 16-octet prefix and is kept
/// as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V6Option {
    /// OPTION_CLIENTID (1, RFC 8415 §21.2): a DUID, at least 2 octets.
    ClientId(Vec<u8>),
    /// OPTION_SERVERID (2, RFC 8415 §21.3): a DUID, at least 2 octets.
    ServerId(Vec<u8>),
    /// OPTION_IA_NA (3, RFC 8415 §21.4).
    IaNa {
        iaid: u32,
        t1: u32,
        t2: u32,
        options: Vec<V6Option>,
    },
    /// OPTION_IAADDR (5, RFC 8415 §21.6); lifetimes in seconds.
    IaAddr {
        addr: Ipv6Addr,
        preferred: u32,
        valid: u32,
        options: Vec<V6Option>,
    },
    /// OPTION_ORO (6, RFC 8415 §21.7): requested option codes.
    Oro(Vec<u16>),
    /// OPTION_RELAY_MSG (9, RFC 8415 §21.10): the raw bytes of a client or relay message
    /// (parse them with [`super::AnyView::parse`]).
    RelayMsg(Vec<u8>),
    /// OPTION_STATUS_CODE (13, RFC 8415 §21.13): status and UTF-8 message.
    StatusCode { code: u16, message: String },
    /// OPTION_INTERFACE_ID (18, RFC 8415 §21.18): opaque.
    InterfaceId(Vec<u8>),
    /// OPTION_IA_PD (25, RFC 8415 §21.21).
    IaPd {
        iaid: u32,
        t1: u32,
        t2: u32,
        options: Vec<V6Option>,
    },
    /// OPTION_IAPREFIX (26, RFC 8415 §21.22); `prefix_len` at most 128.
    IaPrefix {
        preferred: u32,
        valid: u32,
        prefix_len: u8,
        prefix: Ipv6Addr,
        options: Vec<V6Option>,
    },
    /// OPTION_REMOTE_ID (37, RFC 4649 §3): enterprise number and remote-id.
    RemoteId { enterprise: u32, remote_id: Vec<u8> },
    /// OPTION_LQ_QUERY (44, RFC 5007 §4.1.2.1): query-type, link-address, query-options.
    LqQuery {
        query_type: u8,
        link_address: Ipv6Addr,
        options: Vec<V6Option>,
    },
    /// OPTION_CLIENT_DATA (45, RFC 5007 §4.1.2.2): one client's options.
    ClientData(Vec<V6Option>),
    /// OPTION_CLT_TIME (46, RFC 5007 §4.1.2.3): seconds since the last transaction.
    CltTime(u32),
    /// OPTION_LQ_RELAY_DATA (47, RFC 5007 §4.1.2.4): peer-address and the raw relay message.
    LqRelayData {
        peer_address: Ipv6Addr,
        relay_message: Vec<u8>,
    },
    /// OPTION_LQ_CLIENT_LINK (48, RFC 5007 §4.1.2.5): links the client has bindings on.
    LqClientLink(Vec<Ipv6Addr>),
    /// OPTION_RELAY_ID (53, RFC 5460 §5.4.1): the relay's DUID, at least 2 octets.
    RelayId(Vec<u8>),
    /// OPTION_DHCPV4_MSG (87, RFC 7341 §7.1): the raw bytes of one DHCPv4 message (decoded by
    /// [`crate::proto::v4`]).
    Dhcpv4Msg(Vec<u8>),
    /// OPTION_DHCP4_O_DHCP6_SERVER (88, RFC 7341 §7.2).
    Dhcp4oDhcp6Server(Vec<Ipv6Addr>),
    /// OPTION_S46_BR (90, RFC 7598 §4.2).
    S46Br(Ipv6Addr),
    /// OPTION_S46_V4V6BIND (92, RFC 7598 §4.6).
    S46V4V6Bind {
        ipv4: Ipv4Addr,
        prefix_len: u8,
        prefix: Ipv6Addr,
        options: Vec<V6Option>,
    },
    /// OPTION_S46_PORTPARAMS (93, RFC 7598 §4.5).
    S46PortParams(PortParams),
    /// OPTION_S46_CONT_LW (96, RFC 7598 §5): the lw4o6 container.
    S46ContLw(Vec<V6Option>),
    /// OPTION_LQ_BASE_TIME (100, RFC 7653 §6.3.1): seconds since 2000 ([`crate::proto::time`]).
    LqBaseTime(u32),
    /// OPTION_LQ_START_TIME (101, RFC 7653 §6.3.2).
    LqStartTime(u32),
    /// OPTION_LQ_END_TIME (102, RFC 7653 §6.3.3).
    LqEndTime(u32),
    /// OPTION_S46_BIND_IPV6_PREFIX (137, RFC 8539 §6).
    S46BindIpv6Prefix { prefix_len: u8, prefix: Ipv6Addr },
    /// Any other code, payload kept as is.
    Unknown { code: u16, data: Vec<u8> },
}

impl V6Option {
    /// The nested DHCPv4 message of an OPTION_DHCPV4_MSG, decoded with [`crate::proto::v4`]
    /// (`None` for any other option). The bytes are kept as received so that a message the v4
    /// decoder refuses still round-trips at the v6 layer.
    pub fn dhcpv4_message(&self) -> Option<Result<crate::proto::v4::Message, DecodeError>> {
        match self {
            V6Option::Dhcpv4Msg(b) => Some(crate::proto::v4::Message::decode(b)),
            _ => None,
        }
    }

    /// The option code.
    pub fn code(&self) -> u16 {
        use V6Option::*;
        match self {
            ClientId(_) => v6opt::CLIENTID,
            ServerId(_) => v6opt::SERVERID,
            IaNa { .. } => v6opt::IA_NA,
            IaAddr { .. } => v6opt::IAADDR,
            Oro(_) => v6opt::ORO,
            RelayMsg(_) => v6opt::RELAY_MSG,
            StatusCode { .. } => v6opt::STATUS_CODE,
            InterfaceId(_) => v6opt::INTERFACE_ID,
            IaPd { .. } => v6opt::IA_PD,
            IaPrefix { .. } => v6opt::IAPREFIX,
            RemoteId { .. } => v6opt::REMOTE_ID,
            LqQuery { .. } => v6opt::LQ_QUERY,
            ClientData(_) => v6opt::CLIENT_DATA,
            CltTime(_) => v6opt::CLT_TIME,
            LqRelayData { .. } => v6opt::LQ_RELAY_DATA,
            LqClientLink(_) => v6opt::LQ_CLIENT_LINK,
            RelayId(_) => v6opt::RELAY_ID,
            Dhcpv4Msg(_) => v6opt::DHCPV4_MSG,
            Dhcp4oDhcp6Server(_) => v6opt::DHCP4_O_DHCP6_SERVER,
            S46Br(_) => v6opt::S46_BR,
            S46V4V6Bind { .. } => v6opt::S46_V4V6BIND,
            S46PortParams(_) => v6opt::S46_PORTPARAMS,
            S46ContLw(_) => v6opt::S46_CONT_LW,
            LqBaseTime(_) => v6opt::LQ_BASE_TIME,
            LqStartTime(_) => v6opt::LQ_START_TIME,
            LqEndTime(_) => v6opt::LQ_END_TIME,
            S46BindIpv6Prefix { .. } => v6opt::S46_BIND_IPV6_PREFIX,
            Unknown { code, .. } => *code,
        }
    }

    /// Octets this option takes on the wire, header included.
    pub fn encoded_len(&self) -> usize {
        use V6Option::*;
        4 + match self {
            ClientId(b) | ServerId(b) | RelayMsg(b) | InterfaceId(b) | RelayId(b)
            | Dhcpv4Msg(b) => b.len(),
            Unknown { data, .. } => data.len(),
            IaNa { options, .. } | IaPd { options, .. } => 12 + list_len(options),
            IaAddr { options, .. } => 24 + list_len(options),
            IaPrefix { options, .. } => 25 + list_len(options),
            Oro(codes) => 2 * codes.len(),
            StatusCode { message, .. } => 2 + message.len(),
            RemoteId { remote_id, .. } => 4 + remote_id.len(),
            LqQuery { options, .. } => 17 + list_len(options),
            ClientData(options) | S46ContLw(options) => list_len(options),
            CltTime(_) | LqBaseTime(_) | LqStartTime(_) | LqEndTime(_) | S46PortParams(_) => 4,
            LqRelayData { relay_message, .. } => 16 + relay_message.len(),
            LqClientLink(a) | Dhcp4oDhcp6Server(a) => 16 * a.len(),
            S46Br(_) => 16,
            S46V4V6Bind {
                prefix_len,
                options,
                ..
            } => 5 + prefix_octets(*prefix_len) + list_len(options),
            S46BindIpv6Prefix { prefix_len, .. } => 1 + prefix_octets(*prefix_len),
        }
    }

    /// Appends the option (code, length, payload) to `out`. A payload over 65535 octets is
    /// [`EncodeError::TooLong`]; a field that cannot be represented (prefix length over 128,
    /// port parameters out of range) is [`EncodeError::Invalid`]. On error `out` is left as it
    /// was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&self.code().to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        let len_field = self.encode_payload(out).and_then(|()| {
            let len = out.len() - start - 4;
            u16::try_from(len).map_err(|_| EncodeError::TooLong {
                len,
                max: MAX_OPTION_LEN,
            })
        });
        match len_field {
            Ok(len) => {
                if let Some(field) = out.get_mut(start + 2..start + 4) {
                    field.copy_from_slice(&len.to_be_bytes());
                }
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        use V6Option::*;
        match self {
            ClientId(b) | ServerId(b) | RelayMsg(b) | InterfaceId(b) | RelayId(b)
            | Dhcpv4Msg(b) => out.extend_from_slice(b),
            Unknown { data, .. } => out.extend_from_slice(data),
            IaNa {
                iaid,
                t1,
                t2,
                options,
            }
            | IaPd {
                iaid,
                t1,
                t2,
                options,
            } => {
                for v in [iaid, t1, t2] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                encode_list(options, out)?;
            }
            IaAddr {
                addr,
                preferred,
                valid,
                options,
            } => {
                out.extend_from_slice(&addr.octets());
                out.extend_from_slice(&preferred.to_be_bytes());
                out.extend_from_slice(&valid.to_be_bytes());
                encode_list(options, out)?;
            }
            IaPrefix {
                preferred,
                valid,
                prefix_len,
                prefix,
                options,
            } => {
                check_prefix_len(*prefix_len)?;
                out.extend_from_slice(&preferred.to_be_bytes());
                out.extend_from_slice(&valid.to_be_bytes());
                out.push(*prefix_len);
                out.extend_from_slice(&prefix.octets());
                encode_list(options, out)?;
            }
            Oro(codes) => codes
                .iter()
                .for_each(|c| out.extend_from_slice(&c.to_be_bytes())),
            StatusCode { code, message } => {
                out.extend_from_slice(&code.to_be_bytes());
                out.extend_from_slice(message.as_bytes());
            }
            RemoteId {
                enterprise,
                remote_id,
            } => {
                out.extend_from_slice(&enterprise.to_be_bytes());
                out.extend_from_slice(remote_id);
            }
            LqQuery {
                query_type,
                link_address,
                options,
            } => {
                out.push(*query_type);
                out.extend_from_slice(&link_address.octets());
                encode_list(options, out)?;
            }
            ClientData(options) | S46ContLw(options) => encode_list(options, out)?,
            CltTime(v) | LqBaseTime(v) | LqStartTime(v) | LqEndTime(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            LqRelayData {
                peer_address,
                relay_message,
            } => {
                out.extend_from_slice(&peer_address.octets());
                out.extend_from_slice(relay_message);
            }
            LqClientLink(addrs) | Dhcp4oDhcp6Server(addrs) => addrs
                .iter()
                .for_each(|a| out.extend_from_slice(&a.octets())),
            S46Br(a) => out.extend_from_slice(&a.octets()),
            S46V4V6Bind {
                ipv4,
                prefix_len,
                prefix,
                options,
            } => {
                out.extend_from_slice(&ipv4.octets());
                put_prefix(*prefix_len, prefix, out)?;
                encode_list(options, out)?;
            }
            S46PortParams(p) => {
                if PortParams::from_wire(p.offset, p.psid_len, p.wire_psid()) != Some(*p) {
                    return Err(EncodeError::Invalid("S46 port parameters out of range"));
                }
                out.extend_from_slice(&[p.offset, p.psid_len]);
                out.extend_from_slice(&p.wire_psid().to_be_bytes());
            }
            S46BindIpv6Prefix { prefix_len, prefix } => put_prefix(*prefix_len, prefix, out)?,
        }
        Ok(())
    }

    /// Decodes one option's payload by its code. `depth` is how many options enclose it.
    pub(super) fn decode(code: u16, data: &[u8], depth: u8) -> Result<V6Option, DecodeError> {
        use V6Option::*;
        let bad_len = DecodeError::BadOptionLength {
            code,
            len: data.len(),
        };
        let nested = |rest: &[u8]| decode_list(rest, depth);
        Ok(match code {
            v6opt::CLIENTID => ClientId(duid(code, data)?),
            v6opt::SERVERID => ServerId(duid(code, data)?),
            v6opt::RELAY_ID => RelayId(duid(code, data)?),
            v6opt::RELAY_MSG => RelayMsg(data.to_vec()),
            v6opt::INTERFACE_ID => InterfaceId(data.to_vec()),
            v6opt::DHCPV4_MSG => Dhcpv4Msg(data.to_vec()),
            v6opt::IA_NA | v6opt::IA_PD => {
                let (h, rest) = data.split_first_chunk::<12>().ok_or(bad_len)?;
                let (iaid, t1, t2) = (be32(h, 0), be32(h, 4), be32(h, 8));
                let options = nested(rest)?;
                if code == v6opt::IA_NA {
                    IaNa {
                        iaid,
                        t1,
                        t2,
                        options,
                    }
                } else {
                    IaPd {
                        iaid,
                        t1,
                        t2,
                        options,
                    }
                }
            }
            v6opt::IAADDR => {
                let (h, rest) = data.split_first_chunk::<24>().ok_or(bad_len)?;
                IaAddr {
                    addr: ipv6_at(h, 0),
                    preferred: be32(h, 16),
                    valid: be32(h, 20),
                    options: nested(rest)?,
                }
            }
            v6opt::IAPREFIX => {
                let (h, rest) = data.split_first_chunk::<25>().ok_or(bad_len)?;
                let prefix_len = h[8];
                if prefix_len > 128 {
                    return Err(DecodeError::BadOptionValue { code });
                }
                IaPrefix {
                    preferred: be32(h, 0),
                    valid: be32(h, 4),
                    prefix_len,
                    prefix: ipv6_at(h, 9),
                    options: nested(rest)?,
                }
            }
            v6opt::ORO => {
                if data.len() % 2 != 0 {
                    return Err(bad_len);
                }
                Oro(data
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect())
            }
            v6opt::STATUS_CODE => {
                let (status, text) = data.split_first_chunk::<2>().ok_or(bad_len)?;
                let message = std::str::from_utf8(text)
                    .map_err(|_| DecodeError::BadOptionValue { code })?
                    .to_owned();
                StatusCode {
                    code: u16::from_be_bytes(*status),
                    message,
                }
            }
            v6opt::REMOTE_ID => {
                let (e, rest) = data.split_first_chunk::<4>().ok_or(bad_len)?;
                RemoteId {
                    enterprise: u32::from_be_bytes(*e),
                    remote_id: rest.to_vec(),
                }
            }
            v6opt::LQ_QUERY => {
                let (h, rest) = data.split_first_chunk::<17>().ok_or(bad_len)?;
                LqQuery {
                    query_type: h[0],
                    link_address: ipv6_at(h, 1),
                    options: nested(rest)?,
                }
            }
            v6opt::CLIENT_DATA => ClientData(nested(data)?),
            v6opt::S46_CONT_LW => S46ContLw(nested(data)?),
            v6opt::CLT_TIME => CltTime(exact_u32(code, data)?),
            v6opt::LQ_BASE_TIME => LqBaseTime(exact_u32(code, data)?),
            v6opt::LQ_START_TIME => LqStartTime(exact_u32(code, data)?),
            v6opt::LQ_END_TIME => LqEndTime(exact_u32(code, data)?),
            v6opt::LQ_RELAY_DATA => {
                let (peer, rest) = data.split_first_chunk::<16>().ok_or(bad_len)?;
                LqRelayData {
                    peer_address: Ipv6Addr::from(*peer),
                    relay_message: rest.to_vec(),
                }
            }
            v6opt::LQ_CLIENT_LINK => LqClientLink(addr_list(code, data)?),
            v6opt::DHCP4_O_DHCP6_SERVER => Dhcp4oDhcp6Server(addr_list(code, data)?),
            v6opt::S46_BR => S46Br(Ipv6Addr::from(
                <[u8; 16]>::try_from(data).map_err(|_| bad_len)?,
            )),
            v6opt::S46_V4V6BIND => {
                let (v4, rest) = data.split_first_chunk::<4>().ok_or(bad_len)?;
                let (prefix_len, prefix, rest) = take_prefix(code, rest, data.len())?;
                S46V4V6Bind {
                    ipv4: Ipv4Addr::from(*v4),
                    prefix_len,
                    prefix,
                    options: nested(rest)?,
                }
            }
            v6opt::S46_PORTPARAMS => {
                let [offset, psid_len, hi, lo] = <[u8; 4]>::try_from(data).map_err(|_| bad_len)?;
                S46PortParams(
                    PortParams::from_wire(offset, psid_len, u16::from_be_bytes([hi, lo]))
                        .ok_or(DecodeError::BadOptionValue { code })?,
                )
            }
            v6opt::S46_BIND_IPV6_PREFIX => {
                let (prefix_len, prefix, rest) = take_prefix(code, data, data.len())?;
                if !rest.is_empty() {
                    return Err(bad_len);
                }
                S46BindIpv6Prefix { prefix_len, prefix }
            }
            _ => Unknown {
                code,
                data: data.to_vec(),
            },
        })
    }
}

/// Total wire length of a list of options.
pub(super) fn list_len(options: &[V6Option]) -> usize {
    options.iter().map(V6Option::encoded_len).sum()
}

/// Encodes options in order; on error `out` is left as it was.
pub(super) fn encode_list(options: &[V6Option], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    for o in options {
        if let Err(e) = o.encode(out) {
            out.truncate(start);
            return Err(e);
        }
    }
    Ok(())
}

/// Decodes the options nested inside an option that is itself at `depth`.
pub(super) fn decode_list(data: &[u8], depth: u8) -> Result<Vec<V6Option>, DecodeError> {
    let depth = depth
        .checked_add(1)
        .filter(|d| *d <= MAX_OPTION_DEPTH)
        .ok_or(DecodeError::TooDeep)?;
    OptionsView::new(data)?
        .iter()
        .map(|o| V6Option::decode(o.code, o.data, depth))
        .collect()
}

/// Octets of a prefix of `prefix_len` bits when only the significant octets are sent.
pub(super) fn prefix_octets(prefix_len: u8) -> usize {
    usize::from(prefix_len).div_ceil(8)
}

/// `addr` with every bit beyond `prefix_len` cleared.
fn mask(addr: Ipv6Addr, prefix_len: u8) -> Ipv6Addr {
    let keep = u128::MAX
        .checked_shl(128 - u32::from(prefix_len.min(128)))
        .unwrap_or(0);
    Ipv6Addr::from(u128::from(addr) & keep)
}

/// Reads prefix-length, then `ceil(len/8)` prefix octets (bits past the length zeroed).
/// `option_len` is the whole option's payload length, for the error.
pub(super) fn take_prefix(
    code: u16,
    data: &[u8],
    option_len: usize,
) -> Result<(u8, Ipv6Addr, &[u8]), DecodeError> {
    let bad_len = DecodeError::BadOptionLength {
        code,
        len: option_len,
    };
    let (&prefix_len, rest) = data.split_first().ok_or(bad_len)?;
    if prefix_len > 128 {
        return Err(DecodeError::BadOptionValue { code });
    }
    let (bytes, rest) = rest
        .split_at_checked(prefix_octets(prefix_len))
        .ok_or(bad_len)?;
    let mut octets = [0u8; 16];
    octets.iter_mut().zip(bytes).for_each(|(o, b)| *o = *b);
    Ok((prefix_len, mask(Ipv6Addr::from(octets), prefix_len), rest))
}

fn check_prefix_len(prefix_len: u8) -> Result<(), EncodeError> {
    if prefix_len > 128 {
        return Err(EncodeError::Invalid("IPv6 prefix length over 128"));
    }
    Ok(())
}

/// Writes prefix-length and the significant, masked prefix octets.
fn put_prefix(prefix_len: u8, prefix: &Ipv6Addr, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    check_prefix_len(prefix_len)?;
    out.push(prefix_len);
    let octets = mask(*prefix, prefix_len).octets();
    out.extend(octets.iter().take(prefix_octets(prefix_len)));
    Ok(())
}

fn duid(code: u16, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if data.len() < 2 {
        return Err(DecodeError::BadOptionLength {
            code,
            len: data.len(),
        });
    }
    Ok(data.to_vec())
}

/// The payload as a u32 when it is exactly 4 octets.
pub(super) fn exact_u32(code: u16, data: &[u8]) -> Result<u32, DecodeError> {
    <[u8; 4]>::try_from(data)
        .map(u32::from_be_bytes)
        .map_err(|_| DecodeError::BadOptionLength {
            code,
            len: data.len(),
        })
}

fn addr_list(code: u16, data: &[u8]) -> Result<Vec<Ipv6Addr>, DecodeError> {
    if data.len() % 16 != 0 {
        return Err(DecodeError::BadOptionLength {
            code,
            len: data.len(),
        });
    }
    Ok(data
        .chunks_exact(16)
        .filter_map(|c| <[u8; 16]>::try_from(c).ok())
        .map(Ipv6Addr::from)
        .collect())
}

/// Big-endian u32 at a fixed offset of a fixed-size header (`N >= at + 4` by construction).
fn be32<const N: usize>(h: &[u8; N], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.iter_mut()
        .zip(h.iter().skip(at))
        .for_each(|(o, i)| *o = *i);
    u32::from_be_bytes(b)
}

/// IPv6 address at a fixed offset of a fixed-size header (`N >= at + 16` by construction).
pub(super) fn ipv6_at<const N: usize>(h: &[u8; N], at: usize) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b.iter_mut()
        .zip(h.iter().skip(at))
        .for_each(|(o, i)| *o = *i);
    Ipv6Addr::from(b)
}
