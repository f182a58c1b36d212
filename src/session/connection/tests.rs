//! The connection's rules on virtual time ([`At`], an offset from the start): no clock, no
//! socket, no task, no sleep.

use std::net::Ipv4Addr;
use std::ops::{Add, Sub};
use std::time::Duration;

use super::*;
use crate::proto::codes::{dhcp_state, v4msg, v4opt, v4status};
use crate::proto::record::V4Record;
use crate::proto::v4::{Message, MessageView, V4Option};
use crate::session::{Policy, Record, ScanTarget};

const T: Duration = Duration::from_secs(10);

/// Virtual time: how long after the test's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct At(Duration);

const START: At = At(Duration::ZERO);

impl Moment for At {
    fn after(self, d: Duration) -> Option<At> {
        self.0.checked_add(d).map(At)
    }
}

impl Add<Duration> for At {
    type Output = At;
    fn add(self, d: Duration) -> At {
        At(self.0 + d)
    }
}

impl Sub<Duration> for At {
    type Output = At;
    fn sub(self, d: Duration) -> At {
        At(self.0 - d)
    }
}

struct World {
    id: Identity,
    policy: Policy,
    links: LinkSet,
}

impl World {
    fn new() -> World {
        World {
            id: Identity {
                server_duid: vec![0, 4, 1, 2, 3, 4],
                server_id: Ipv4Addr::new(127, 0, 0, 1),
            },
            policy: Policy {
                active: true,
                allow_insecure_active: true,
                ..Policy::default()
            },
            links: LinkSet::default(),
        }
    }
    fn env(&self) -> Env<'_> {
        Env {
            identity: &self.id,
            policy: &self.policy,
            links: &self.links,
            unix_now: 1_700_000_100,
        }
    }
}

fn conn(max_queries: usize, t0: At) -> Connection<At> {
    let limits = Limits {
        data_timeout: T,
        max_queries,
        shards: 2,
    };
    Connection::new(Family::V4, limits, t0)
}

fn v4(msg_type: u8, xid: u32) -> Vec<u8> {
    let mut m = Message::new(1, msg_type, xid);
    m.options
        .push(V4Option::ParameterRequestList(vec![51, 91, 109, 159]));
    let mut out = Vec::new();
    m.encode(&mut out).unwrap();
    out
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut f = (msg.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(msg);
    f
}

fn scan(c: &mut Connection<At>, w: &World, now: At, xid: u32) -> (Box<ScanPlan>, BulkStream) {
    match c.handle_message(now, &v4(v4msg::BULKLEASEQUERY, xid), &w.env()) {
        Step::Scan(plan, stream) => (plan, stream),
        other => panic!("not a scan: {other:?}"),
    }
}

fn status_of(reply: &[u8]) -> Option<u8> {
    let view = MessageView::parse(&reply[2..]).unwrap();
    view.option(v4opt::STATUS_CODE).map(|s| s[0])
}

#[test]
fn a_query_holds_its_slot_until_its_last_octet_is_written() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(2, t0);
    assert!(c.poll_read());
    let _a = scan(&mut c, &w, t0, 1);
    assert!(c.poll_read(), "one of two slots taken");
    let _b = scan(&mut c, &w, t0, 2);
    assert!(
        !c.poll_read(),
        "RFC 5460 §7.3: no frame read beyond the limit"
    );
    // The scan of query 1 ends and its last message is queued: still outstanding.
    c.handle_stream_end(1);
    assert!(!c.poll_read());
    assert_eq!(c.outstanding(), 2);
    // Its last octet is written: the slot is free.
    c.handle_last_written(t0 + Duration::from_secs(1));
    assert!(c.poll_read());
    assert_eq!(c.outstanding(), 1);
}

#[test]
fn an_error_reply_holds_a_slot_until_written_and_a_dropped_query_none() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(1, t0);
    // DHCPTLS without TLS: a TLSConnectionRefused reply (RFC 7724 §8.1).
    let Step::Refused(bytes, Refusal::TlsNotConfigured) =
        c.handle_message(t0, &v4(v4msg::TLS, 9), &w.env())
    else {
        panic!("DHCPTLS is answered");
    };
    assert_eq!(status_of(&bytes), Some(v4status::TLS_CONNECTION_REFUSED));
    assert!(!c.poll_read());
    c.handle_last_written(t0);
    assert!(c.poll_read());
    assert!(c.poll_close().is_none());
}

#[test]
fn a_running_transaction_id_is_dropped_and_free_again_once_the_stream_ends() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    let _a = scan(&mut c, &w, t0, 7);
    let step = c.handle_message(t0, &v4(v4msg::BULKLEASEQUERY, 7), &w.env());
    assert!(matches!(step, Step::Duplicate), "scenario 23: {step:?}");
    assert_eq!(c.outstanding(), 1, "the duplicate holds no slot");
    c.handle_stream_end(7);
    let _b = scan(&mut c, &w, t0, 7);
}

#[test]
fn an_active_query_is_alone_on_its_connection() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    // An active query beside a running bulk query is refused with NotAllowed.
    let _a = scan(&mut c, &w, t0, 1);
    let Step::Reply(busy) = c.handle_message(t0, &v4(v4msg::ACTIVELEASEQUERY, 2), &w.env()) else {
        panic!("refused");
    };
    assert_eq!(status_of(&busy), Some(v4status::NOT_ALLOWED));
    assert_eq!(&busy[2 + 4..2 + 8], &2u32.to_be_bytes(), "on its own xid");
    c.handle_stream_end(1);
    c.handle_last_written(t0);
    c.handle_last_written(t0);
    // Alone, it starts; it holds no slot, and any query beside it is refused (RFC 7724 §8.3).
    let step = c.handle_message(t0, &v4(v4msg::ACTIVELEASEQUERY, 3), &w.env());
    assert!(matches!(step, Step::Active(_)), "{step:?}");
    assert_eq!(c.outstanding(), 0);
    let Step::Reply(busy) = c.handle_message(t0, &v4(v4msg::BULKLEASEQUERY, 4), &w.env()) else {
        panic!("refused");
    };
    assert_eq!(status_of(&busy), Some(v4status::NOT_ALLOWED));
    c.handle_last_written(t0);
    c.handle_active_end(3);
    let _b = scan(&mut c, &w, t0, 4);
}

#[test]
fn a_message_type_not_allowed_closes_without_a_reply() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    let step = c.handle_message(t0, &v4(v4msg::DISCOVER, 1), &w.env());
    assert!(matches!(step, Step::Close), "RFC 7724 §8.1.1: {step:?}");
    assert_eq!(c.poll_close(), Some(Close::ProtocolError));
    assert!(!c.poll_read());
}

#[test]
fn a_bad_frame_closes() {
    let t0 = START;
    let mut c = conn(4, t0);
    c.start_read(t0);
    c.handle_read(t0, &[0, 0]);
    assert!(c.poll_message().is_none());
    assert_eq!(c.poll_close(), Some(Close::ProtocolError), "scenario 1");
}

#[test]
fn a_frame_must_complete_within_t_of_its_first_octet() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    // A query outstanding does not stop the frame clock.
    let _a = scan(&mut c, &w, t0, 1);
    c.start_read(t0);
    assert_eq!(c.poll_read_timeout(), Some(t0 + T), "the idle check");
    let frame = framed(&v4(v4msg::BULKLEASEQUERY, 2));
    let t1 = t0 + Duration::from_secs(3);
    c.handle_read(t1, &frame[..1]);
    assert_eq!(c.poll_read_timeout(), Some(t1 + T));
    // Octets trickling in do not move the deadline.
    c.handle_read(t1 + T / 2, &frame[1..10]);
    assert!(c.poll_message().is_none());
    assert_eq!(c.poll_read_timeout(), Some(t1 + T));
    assert_eq!(c.handle_timeout(t1 + T - Duration::from_millis(1)), None);
    assert_eq!(c.handle_timeout(t1 + T), Some(Close::FrameTimeout));
}

#[test]
fn a_frame_completed_in_time_stops_the_frame_clock() {
    let t0 = START;
    let mut c = conn(4, t0);
    c.start_read(t0);
    let two = [
        framed(&v4(v4msg::BULKLEASEQUERY, 1)),
        framed(&v4(v4msg::BULKLEASEQUERY, 2)),
    ]
    .concat();
    let cut = two.len() - 5;
    c.handle_read(t0, &two[..cut]);
    let m = c.poll_message().expect("the first frame is complete");
    assert_eq!(&m[4..8], &1u32.to_be_bytes());
    assert!(c.poll_message().is_none());
    // The second frame begun in the same read: its clock starts when the reader asks again.
    let t1 = t0 + Duration::from_secs(4);
    c.start_read(t1);
    assert_eq!(c.poll_read_timeout(), Some(t1 + T));
    c.handle_read(t1 + T - Duration::from_millis(1), &two[cut..]);
    assert!(c.poll_message().is_some());
    assert_eq!(c.handle_timeout(t1 + T), None);
}

#[test]
fn idle_counts_from_the_last_query_finished_and_only_when_nothing_is_outstanding() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    let _a = scan(&mut c, &w, t0, 1);
    c.start_read(t0);
    // T without a frame, but a query is outstanding: not idle; the clock starts again.
    assert_eq!(c.handle_timeout(t0 + T), None);
    assert_eq!(c.poll_read_timeout(), Some(t0 + 2 * T));
    // The query finishes (its last octet written) at t1: idle counts from t1.
    let t1 = t0 + T + Duration::from_secs(4);
    c.handle_stream_end(1);
    c.handle_last_written(t1);
    assert_eq!(c.poll_read_timeout(), Some(t1 + T));
    assert_eq!(
        c.handle_timeout(t0 + 2 * T),
        None,
        "only 6 s after the last query"
    );
    assert!(c.poll_close().is_none());
    assert_eq!(c.handle_timeout(t1 + T), Some(Close::Idle));
}

#[test]
fn an_active_query_keeps_the_connection_from_idling() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    let step = c.handle_message(t0, &v4(v4msg::ACTIVELEASEQUERY, 3), &w.env());
    assert!(matches!(step, Step::Active(_)));
    c.start_read(t0);
    assert_eq!(c.handle_timeout(t0 + T), None);
    c.handle_active_end(3);
    assert_eq!(c.handle_timeout(t0 + 2 * T), Some(Close::Idle));
}

#[test]
fn a_write_blocked_for_t_closes_and_the_deadline_is_checked_before_the_write() {
    let t0 = START;
    let mut c = conn(4, t0);
    c.handle_write_start(t0);
    c.handle_write_done();
    let t1 = t0 + Duration::from_secs(2);
    c.handle_write_start(t1);
    assert_eq!(c.poll_write_timeout(), Some(t1 + T), "T per write");
    assert_eq!(c.poll_timeout(), Some(t1 + T));
    assert_eq!(c.handle_timeout(t1 + T - Duration::from_millis(1)), None);
    // At T the deadline wins, even if the write could complete in the same instant: the shell
    // asks the time first, and a write rescued afterwards changes nothing.
    assert_eq!(c.handle_timeout(t1 + T), Some(Close::SendTimeout));
    c.handle_write_done();
    assert_eq!(c.poll_close(), Some(Close::SendTimeout));
    assert_eq!(c.handle_timeout(t1 + 3 * T), None, "counted once");
}

fn record() -> V4Record<'static> {
    V4Record {
        addr: Ipv4Addr::new(192, 0, 2, 10),
        port_params: None,
        htype: 1,
        chaddr: &[2, 0, 0, 0, 0, 1],
        client_id: None,
        state: dhcp_state::ACTIVE,
        cltt: 1_700_000_000,
        state_start: 1_700_000_000,
        expires: 1_700_003_600,
        circuit_id: None,
        remote_id: None,
        relay_id: None,
        softwire_src: None,
        v6: None,
        data_source: 0,
    }
}

fn msg_type(frame: &[u8]) -> u8 {
    MessageView::parse(&frame[2..])
        .unwrap()
        .message_type()
        .unwrap()
}

fn has_server_id(frame: &[u8]) -> bool {
    MessageView::parse(&frame[2..])
        .unwrap()
        .has_option(v4opt::SERVER_ID)
}

#[test]
fn the_first_record_becomes_the_first_message_and_the_stream_ends_with_done() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    let (plan, mut s) = scan(&mut c, &w, t0, 1);
    assert!(matches!(plan.target, ScanTarget::V4(_)));
    let enc = plan.encoder(1_700_000_100);
    let mut chunk = Vec::with_capacity(4096);
    for _ in 0..2 {
        enc.encode(Record::V4(record()), &mut chunk, 4096);
    }
    let one = chunk.len() / 2;
    let ChunkStep::Write { first, skip } = s.handle_chunk(&plan, &chunk, 2, false, false) else {
        panic!("written");
    };
    let first = first.expect("the first record is promoted");
    assert_eq!(skip, one, "the rest of the chunk is written as it is");
    assert!(
        has_server_id(&first),
        "RFC 6926 §7.3: option 54 in the first message"
    );
    assert!(!has_server_id(&chunk[skip..]));
    // Later chunks are not promoted again.
    let again = s.handle_chunk(&plan, &chunk, 2, true, false);
    assert_eq!(
        again,
        ChunkStep::Write {
            first: None,
            skip: 0
        }
    );
    assert!(!s.is_complete());
    assert_eq!(
        s.handle_chunk(&plan, &[], 0, true, false),
        ChunkStep::Write {
            first: None,
            skip: 0
        }
    );
    assert!(s.is_complete());
    assert_eq!(s.total(), 4);
    let last = s.last_message(&plan, false, 1_700_000_100);
    assert_eq!(msg_type(&last), v4msg::LEASEQUERYDONE);
    assert!(!has_server_id(&last), "not the only message");
}

#[test]
fn a_stream_without_records_is_one_done_with_the_server_id() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    let (plan, mut s) = scan(&mut c, &w, t0, 1);
    for _ in 0..2 {
        s.handle_chunk(&plan, &[], 0, true, false);
    }
    assert!(s.is_complete());
    assert!(!s.replied());
    let last = s.last_message(&plan, false, 1_700_000_100);
    assert_eq!(msg_type(&last), v4msg::LEASEQUERYDONE);
    assert!(has_server_id(&last), "RFC 6926 §7.3: the only message");
}

#[test]
fn a_stream_cut_short_ends_with_query_terminated() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    // A shard failed before any record: QueryTerminated in the first (only) message.
    let (plan, mut s) = scan(&mut c, &w, t0, 1);
    assert_eq!(s.handle_chunk(&plan, &[], 0, true, true), ChunkStep::Cut);
    let last = s.last_message(&plan, true, 1_700_000_100);
    assert_eq!(status_of(&last), Some(v4status::QUERY_TERMINATED));
    assert!(has_server_id(&last));
    // A chunk the plan did not encode cuts the stream too.
    let (plan, mut s) = scan(&mut c, &w, t0, 2);
    assert_eq!(
        s.handle_chunk(&plan, &[0, 4, 1, 2, 3, 4], 1, false, false),
        ChunkStep::Cut
    );
    // After a first message: QueryTerminated in a DONE without option 54.
    let (plan, mut s) = scan(&mut c, &w, t0, 3);
    let mut chunk = Vec::with_capacity(4096);
    plan.encoder(1_700_000_100)
        .encode(Record::V4(record()), &mut chunk, 4096);
    assert!(matches!(
        s.handle_chunk(&plan, &chunk, 1, false, false),
        ChunkStep::Write { .. }
    ));
    assert!(s.replied());
    let last = s.last_message(&plan, true, 1_700_000_100);
    assert_eq!(msg_type(&last), v4msg::LEASEQUERYDONE);
    assert_eq!(status_of(&last), Some(v4status::QUERY_TERMINATED));
    assert!(!has_server_id(&last));
}

#[test]
fn a_blocked_write_still_times_out_after_the_reader_stopped() {
    let t0 = START;
    let w = World::new();
    let mut c = conn(4, t0);
    let _a = scan(&mut c, &w, t0, 1);
    c.start_read(t0);
    c.handle_read(t0, &[0]);
    // The reader gives up on a slow frame; the outstanding query's writes go on, bounded.
    assert_eq!(c.handle_read_timeout(t0 + T), Some(Close::FrameTimeout));
    c.handle_write_start(t0 + T);
    assert_eq!(c.poll_timeout(), Some(t0 + 2 * T));
    assert_eq!(
        c.handle_read_timeout(t0 + 2 * T),
        None,
        "the reader's side is closed"
    );
    assert_eq!(c.handle_write_timeout(t0 + 2 * T), Some(Close::SendTimeout));
}

// TLS negotiation (issue 15 part 1, 3).

fn tls_world(mode: crate::session::TlsMode, insecure: bool) -> World {
    let mut w = World::new();
    w.policy.tls = mode;
    w.policy.allow_insecure_active = insecure;
    w
}

fn conn6(t0: At) -> Connection<At> {
    let limits = Limits {
        data_timeout: T,
        max_queries: 4,
        shards: 2,
    };
    Connection::new(Family::V6, limits, t0)
}

#[test]
fn dhcptls_first_starts_tls_and_the_octets_after_it_go_to_tls() {
    use crate::session::TlsMode;
    let t0 = START;
    let w = tls_world(TlsMode::Optional, false);
    let mut c = conn(1, t0);
    // DHCPTLS (with an option, ignored) and the start of a ClientHello in the same read.
    let mut wire = framed(&v4(v4msg::TLS, 0x77));
    wire.extend_from_slice(&[0x16, 3, 1, 0, 5, 1, 2, 3]);
    c.start_read(t0);
    c.handle_read(t0, &wire);
    let msg = c.poll_message().unwrap();
    let Step::StartTls(answer) = c.handle_message(t0, &msg, &w.env()) else {
        panic!("DHCPTLS accepted");
    };
    // A DHCPTLS, same xid, option 54, no status (RFC 7724 §8.1).
    let view = MessageView::parse(&answer[2..]).unwrap();
    assert_eq!(view.message_type(), Some(v4msg::TLS));
    assert_eq!(view.xid, 0x77);
    assert_eq!(view.op, 2);
    assert!(view.option(v4opt::SERVER_ID).is_some());
    assert_eq!(status_of(&answer), None);
    assert!(!c.poll_read(), "nothing is read in plain while TLS starts");
    assert_eq!(c.outstanding(), 0, "the answer holds no slot");
    assert_eq!(c.take_pending(), vec![0x16, 3, 1, 0, 5, 1, 2, 3]);
    assert!(c.take_pending().is_empty());
    assert!(!c.is_secured());
    c.handle_tls_up(t0);
    assert!(c.is_secured() && c.poll_read());
    // DHCPTLS again, now over TLS: not allowed there; close.
    assert!(matches!(
        c.handle_message(t0, &v4(v4msg::TLS, 0x78), &w.env()),
        Step::Close
    ));
    assert_eq!(c.poll_close(), Some(Close::ProtocolError));
}

#[test]
fn starttls_gets_a_reply_without_status_with_its_xid() {
    use crate::proto::codes::v6msg;
    use crate::proto::v6::MessageView as V6View;
    use crate::session::TlsMode;
    let t0 = START;
    let w = tls_world(TlsMode::Required, false);
    let mut c = conn6(t0);
    let Step::StartTls(answer) = c.handle_message(t0, &[v6msg::STARTTLS, 1, 2, 3], &w.env()) else {
        panic!("STARTTLS accepted");
    };
    let v = V6View::parse(&answer[2..]).unwrap();
    assert_eq!((v.msg_type, v.xid), (v6msg::REPLY, 0x010203));
    assert!(v
        .options()
        .get(crate::proto::codes::v6opt::STATUS_CODE)
        .is_none());
    assert!(v
        .options()
        .get(crate::proto::codes::v6opt::SERVERID)
        .is_some());
    // A handshake that fails closes.
    c.handle_tls_failed();
    assert_eq!(c.poll_close(), Some(Close::TlsFailed));
    assert!(!c.poll_read());
    // Truncated STARTTLS (not a DHCPv6 message): closes.
    let mut c = conn6(t0);
    assert!(matches!(
        c.handle_message(t0, &[v6msg::STARTTLS, 1], &w.env()),
        Step::Close
    ));
    assert_eq!(c.poll_close(), Some(Close::ProtocolError));
}

#[test]
fn starttls_anywhere_but_first_closes_in_every_mode() {
    use crate::session::TlsMode;
    for mode in [TlsMode::Off, TlsMode::Optional] {
        let t0 = START;
        let w = tls_world(mode, true);
        let mut c = conn(4, t0);
        let _ = scan(&mut c, &w, t0, 1);
        assert!(matches!(
            c.handle_message(t0, &v4(v4msg::TLS, 2), &w.env()),
            Step::Close
        ));
        assert_eq!(c.poll_close(), Some(Close::ProtocolError), "{mode}");
    }
}

#[test]
fn required_mode_closes_on_any_plain_first_message_and_serves_after_tls() {
    use crate::session::TlsMode;
    let t0 = START;
    let w = tls_world(TlsMode::Required, false);
    for msg in [
        v4(v4msg::BULKLEASEQUERY, 1),
        v4(v4msg::ACTIVELEASEQUERY, 1),
        b"garbage".to_vec(),
    ] {
        let mut c = conn(1, t0);
        assert!(matches!(c.handle_message(t0, &msg, &w.env()), Step::Close));
        assert_eq!(c.poll_close(), Some(Close::TlsRequired));
    }
    // Over TLS: bulk and active (without allow_insecure_active) are served.
    let mut c = conn(4, t0);
    assert!(matches!(
        c.handle_message(t0, &v4(v4msg::TLS, 9), &w.env()),
        Step::StartTls(_)
    ));
    c.handle_tls_up(t0);
    let _ = scan(&mut c, &w, t0, 1);
    c.handle_stream_end(1);
    c.handle_last_written(t0);
    assert!(matches!(
        c.handle_message(t0, &v4(v4msg::ACTIVELEASEQUERY, 2), &w.env()),
        Step::Active(_)
    ));
}

#[test]
fn optional_mode_refuses_plain_active_unless_insecure_is_allowed() {
    use crate::session::TlsMode;
    let t0 = START;
    let w = tls_world(TlsMode::Optional, false);
    // Plain bulk is served.
    let mut c = conn(4, t0);
    let _ = scan(&mut c, &w, t0, 1);
    // Plain active: NotAllowed, then close.
    let mut c = conn(4, t0);
    let Step::Refused(bytes, Refusal::PlainActive) =
        c.handle_message(t0, &v4(v4msg::ACTIVELEASEQUERY, 2), &w.env())
    else {
        panic!("plain active refused");
    };
    assert_eq!(status_of(&bytes), Some(v4status::NOT_ALLOWED));
    assert_eq!(c.poll_close(), Some(Close::AfterReply));
    // With allow_insecure_active it runs in plain.
    let w = tls_world(TlsMode::Optional, true);
    let mut c = conn(4, t0);
    assert!(matches!(
        c.handle_message(t0, &v4(v4msg::ACTIVELEASEQUERY, 2), &w.env()),
        Step::Active(_)
    ));
    // tls = off without the switch: the same refusal, counted alike.
    let w = tls_world(TlsMode::Off, false);
    let mut c = conn(4, t0);
    assert!(matches!(
        c.handle_message(t0, &v4(v4msg::ACTIVELEASEQUERY, 2), &w.env()),
        Step::Refused(_, Refusal::PlainActive)
    ));
}
