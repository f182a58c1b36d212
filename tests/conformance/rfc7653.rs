//! RFC 7653 (DHCPv6 active leasequery) on a server without it: ACTIVELEASEQUERY and STARTTLS refused
//! (§9.2, §6.2.2).

use super::fixtures::*;
use crate::common::ServerBuilder;
use leasequery::proto::codes::v6msg;
use leasequery::proto::codes::v6status;
use leasequery::proto::v6::Message;
use leasequery::proto::v6::V6Option;

#[test]
fn s41_rfc7653_9_2_active_query_is_not_supported_then_closed() {
    let srv = ServerBuilder::new().start();
    let mut c = srv.connect6();
    let m = Message {
        msg_type: v6msg::ACTIVELEASEQUERY,
        xid: 41,
        options: vec![V6Option::ClientId(REQUESTOR.to_vec())],
    };
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    c.send(&b);
    let r = recv(&mut c);
    assert_eq!(
        (r.msg_type, r.xid, status(&r)),
        (v6msg::LEASEQUERY_REPLY, 41, Some(v6status::NOT_SUPPORTED))
    );
    assert!(c.recv().is_none(), "closed after NotSupported");
}

#[test]
fn s45_rfc7653_6_2_2_starttls_is_refused() {
    let srv = ServerBuilder::new().start();
    let mut c = srv.connect6();
    c.send(&[v6msg::STARTTLS, 0, 0, 45]);
    let r = recv(&mut c);
    assert_eq!(
        (r.msg_type, r.xid, status(&r)),
        (v6msg::REPLY, 45, Some(v6status::TLS_CONNECTION_REFUSED))
    );
}
