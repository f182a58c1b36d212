//! Everything on the wire, sans-io: no glommio, no sockets, no clocks.
//!
//! - [`framing`]: the 2-octet length prefix of leasequery over TCP (RFC 5460 §5.1, RFC 6926 §6.1).
//! - [`v6`]: DHCPv6 messages and options, a borrowed view for decoding and an owned form for building.
//! - [`v4`]: DHCPv4 (BOOTP layout, magic cookie, RFC 3396 long options), view and owned form.
//! - [`dhcp4o6`]: DHCPV4-QUERY/RESPONSE and the draft's rules for leasequery over 4o6.
//! - [`record`]: borrowed binding records, the input of the reply encoder.
//! - [`encoder`]: the streaming bulk/active reply encoder (pre-sized buffers, no allocation per record).
//! - [`time`]: DHCPv6 (epoch 2000) and DHCPv4 (epoch 1970) leasequery times.
//! - [`codes`]: code points.
pub mod codes;
pub mod dhcp4o6;
pub mod encoder;
pub mod error;
pub mod framing;
pub mod record;
pub mod time;
pub mod v4;
pub mod v6;

pub use error::{DecodeError, EncodeError};
