//! Connection policy (RFC 5460 §7.1, RFC 6926 §8.1): the requestor allow-list.

mod common;

use std::time::Duration;

use common::ServerBuilder;

/// A requestor outside the allow-list is closed at once, without a reply.
#[test]
fn requestor_outside_the_allow_list_is_closed_at_once() {
    let srv = ServerBuilder::new()
        .shards(1)
        .arg("--allow")
        .arg("192.0.2.0/24")
        .start();
    for addr in [srv.lq6, srv.lq4] {
        let mut c = common::Conn::connect(addr);
        assert!(
            c.closed_silently(Duration::from_secs(5)),
            "{addr}: not closed"
        );
    }
}

/// Inside the allow-list the connection stays open (the idle timeout is 300 s by default).
#[test]
fn requestor_inside_the_allow_list_stays_connected() {
    let srv = ServerBuilder::new().shards(1).start();
    let mut c = srv.connect6();
    assert!(
        !c.closed_silently(Duration::from_millis(500)),
        "closed although allowed"
    );
}
