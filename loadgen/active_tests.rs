//! Unit tests of `active.rs`.

use super::*;
use leasequery::proto::codes::v4status;
use leasequery::proto::v6::{self, V6Option};

/// The catch-up start goes on the wire in each layer's epoch: 2000 for DHCPv6
/// (OPTION_LQ_START_TIME), 1970 for DHCPv4 (query-start-time).
#[test]
fn start_times_are_sent_in_each_layer_s_epoch() {
    let unix = 1_800_000_000;
    let m = v6::Message::decode(&active_query(Form::O6, 7, 8, unix)).unwrap();
    let v6_start = m.options.iter().find_map(|o| match o {
        V6Option::LqStartTime(t) => Some(*t),
        _ => None,
    });
    assert_eq!(v6_start, Some(unix - 946_684_800));
    let inner = m.options.iter().find_map(|o| match o {
        V6Option::Dhcpv4Msg(b) => Some(v4::Message::decode(b).unwrap()),
        _ => None,
    });
    assert_eq!(
        inner.unwrap().option(v4opt::QUERY_START_TIME),
        Some(&v4::V4Option::QueryStartTime(unix))
    );
}

#[test]
fn forms_parse() {
    assert_eq!("4o6".parse::<Form>(), Ok(Form::O6));
    assert_eq!("v4".parse::<Form>(), Ok(Form::V4));
    assert!("v5".parse::<Form>().is_err());
}

#[test]
fn messages_are_classified() {
    // A v6 keepalive: DATA with no options.
    assert!(matches!(decode6(&[17, 0, 0, 1]), Msg::Keepalive));
    let mut done = Vec::new();
    v6::Message {
        msg_type: v6msg::LEASEQUERY_DONE,
        xid: 1,
        options: vec![V6Option::StatusCode {
            code: v6status::QUERY_TERMINATED,
            message: String::new(),
        }],
    }
    .encode(&mut done)
    .unwrap();
    assert!(matches!(
        decode6(&done),
        Msg::Status {
            code: v6status::QUERY_TERMINATED,
            done: true
        }
    ));
    let mut st = v4::Message::new(2, v4msg::LEASEQUERYSTATUS, 7);
    st.options.push(v4::V4Option::StatusCode {
        code: v4status::CATCH_UP_COMPLETE,
        message: String::new(),
    });
    let mut b = Vec::new();
    st.encode(&mut b).unwrap();
    assert!(matches!(
        decode4(&b),
        Msg::Status {
            code: v6status::CATCH_UP_COMPLETE,
            done: false
        }
    ));
    assert!(matches!(decode4(&[1, 2]), Msg::Other));
}
