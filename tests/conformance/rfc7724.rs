//! RFC 7724 (DHCPv4 active leasequery): message types not allowed on TCP 67 close the connection (§8.1.1).

use super::fixtures::*;
use leasequery::proto::codes::v4msg;
use leasequery::proto::codes::v4opt;
use leasequery::proto::v4;
use std::time::Duration;

#[test]
fn s37_rfc7724_8_1_1_other_message_types_close() {
    let srv = started(v4_import(), 2);
    // DHCPDISCOVER, DHCPLEASEQUERY (UDP only) and DHCPACTIVELEASEQUERY (active not served).
    for t in [v4msg::DISCOVER, v4msg::LEASEQUERY, v4msg::ACTIVELEASEQUERY] {
        let mut c = srv.connect4();
        let mut m = v4::Message::new(BOOTREQUEST, t, 0x3700_0000 | u32::from(t));
        m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)));
        let mut b = Vec::new();
        m.encode(&mut b).unwrap();
        c.send(&b);
        assert!(
            c.closed_silently(Duration::from_secs(10)),
            "type {t}: expected a close without reply"
        );
    }
    // The server still answers new connections.
    let mut c = srv.connect4();
    let q = bulk_v4(0x3700_00ff, |m| {
        m.options.push(raw_opt(v4opt::CLIENT_ID, &hex(CID_A)))
    });
    let (msgs, _, _) = exchange_v4(&mut c, &q, 0x3700_00ff);
    assert_eq!(msgs.len(), 3);
}
