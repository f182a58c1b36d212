//! The conformance scenarios of codepoints-and-scenarios.md section 6, one module per RFC (as
//! hickory-dns gathers its conformance tests): each test starts its own `leasequeryd` on free
//! loopback ports with a small inline import file and checks the exact message sequence of each
//! answer, decoded with the crate's own codecs. Test names keep the scenario number and the RFC
//! section. One binary links faster than six.

#[path = "../common/mod.rs"]
mod common;
mod fixtures;

mod dhcp4o6;
mod rfc5007;
mod rfc5460;
mod rfc6926;
mod rfc7341;
mod rfc7653;
mod rfc7724;
