//! Issue 13 items 3 and 4 at the server: with `--data-dir` what an import loads is durable (a
//! start without `--import` gives the same bulk answers), a later `--import` upserts by key, and
//! a start that lacks a shard directory of the recorded shard set is refused (a shard-count
//! change on purpose still works).

mod common;

use std::path::Path;

use common::{Conn, Server, ServerBuilder, TempDir};
use leasequery::proto::codes::{query_type, v4msg, v6msg, v6opt};
use leasequery::proto::v4::{self, V4Option};
use leasequery::proto::v6::{Message, V6Option};

fn demo() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo-leases.jsonl"),
    )
    .unwrap()
}

/// Every v4/4o6 binding a DHCPv4 bulk query for all addresses returns, one line each, with the
/// options that do not depend on the time of the query (lease times, client-last-transaction
/// time, base time) or on the order of the stream (server identifier in the first message).
fn v4_answers(srv: &Server) -> Vec<String> {
    let mut q = v4::Message::new(1, v4msg::BULKLEASEQUERY, 7);
    q.options.push(V4Option::ParameterRequestList(vec![
        1, 3, 51, 61, 82, 91, 109, 159,
    ]));
    let mut bytes = Vec::new();
    q.encode(&mut bytes).unwrap();
    let mut c = srv.connect4();
    c.send(&bytes);
    let mut out = Vec::new();
    loop {
        let m = v4::Message::decode(&c.recv().expect("bulk stream")).unwrap();
        match m.message_type() {
            Some(t) if t == v4msg::LEASEQUERYDONE => break,
            Some(t) => {
                let opts: Vec<&V4Option> = m
                    .options
                    .iter()
                    .filter(|o| ![51, 54, 58, 59, 91, 152].contains(&o.code()))
                    .collect();
                out.push(format!("{t} {} {:?} {opts:?}", m.ciaddr, m.hw_addr()));
            }
            None => panic!("a message without a type"),
        }
    }
    out.sort();
    out
}

/// The client DUIDs of the plain v6 bindings behind the demo's DHCPv6 relay.
fn v6_answers(srv: &Server) -> Vec<Vec<u8>> {
    let m = Message {
        msg_type: v6msg::LEASEQUERY,
        xid: 9,
        options: vec![
            V6Option::ClientId(vec![0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]),
            V6Option::LqQuery {
                query_type: query_type::BY_RELAY_ID,
                link_address: "::".parse().unwrap(),
                options: vec![V6Option::RelayId(
                    hex::decode("000300010a0000000010").unwrap(),
                )],
            },
        ],
    };
    let mut bytes = Vec::new();
    m.encode(&mut bytes).unwrap();
    let mut c: Conn = srv.connect6();
    c.send(&bytes);
    let mut out = Vec::new();
    loop {
        let m = Message::decode(&c.recv().expect("bulk stream")).unwrap();
        for o in &m.options {
            if let V6Option::ClientData(inner) = o {
                for i in inner {
                    if let V6Option::ClientId(d) = i {
                        out.push(d.clone());
                    }
                }
            }
        }
        let more = m.msg_type == v6msg::LEASEQUERY_DATA
            || (m.msg_type == v6msg::LEASEQUERY_REPLY
                && m.options.iter().any(|o| o.code() == v6opt::CLIENT_DATA));
        if !more {
            break;
        }
    }
    out.sort();
    out
}

fn stop(mut srv: Server) {
    let st = srv.terminate().expect("the server exits");
    assert!(st.success(), "exit {st:?}; log:\n{}", srv.log());
}

#[test]
fn an_import_is_durable_and_a_later_import_upserts_by_key() {
    let data = TempDir::new("import-durable");
    let dir = data.path().join("data");
    let srv = ServerBuilder::new()
        .arg("--no-authority")
        .import(demo())
        .data_dir(&dir)
        .start();
    let (v4a, v6a) = (v4_answers(&srv), v6_answers(&srv));
    assert_eq!(v4a.len(), 20, "{v4a:#?}");
    assert_eq!(v6a.len(), 5);
    stop(srv);

    // No --import: the same answers from the data directory alone.
    let srv = ServerBuilder::new()
        .arg("--no-authority")
        .data_dir(&dir)
        .start();
    assert_eq!(v4_answers(&srv), v4a);
    assert_eq!(v6_answers(&srv), v6a);
    stop(srv);

    // A later import upserts by key: one binding changed, one new, the others kept.
    let second = concat!(
        r#"{"ipv4":"198.51.100.1","chaddr":"02:00:00:00:99:01","state":"active","cltt":1767227601,"expires":1767314001}"#,
        "\n",
        r#"{"ipv4":"203.0.113.9","chaddr":"02:00:00:00:99:09","state":"active","cltt":1767227601,"expires":1767314001}"#,
        "\n"
    );
    let srv = ServerBuilder::new()
        .arg("--no-authority")
        .import(second)
        .data_dir(&dir)
        .start();
    let v4b = v4_answers(&srv);
    assert_eq!(v4b.len(), 21, "{v4b:#?}");
    assert!(v4b.iter().any(|l| l.contains("203.0.113.9")));
    let changed: Vec<&String> = v4b
        .iter()
        .filter(|l| l.contains(" 198.51.100.1 "))
        .collect();
    assert_eq!(changed.len(), 1);
    assert!(
        changed[0].contains("[2, 0, 0, 0, 153, 1]"),
        "{}",
        changed[0]
    );
    let kept: Vec<&String> = v4a
        .iter()
        .filter(|l| !l.contains(" 198.51.100.1 "))
        .collect();
    for l in &kept {
        assert!(v4b.contains(l), "lost by the second import: {l}");
    }
    assert_eq!(v6_answers(&srv), v6a);
    stop(srv);

    let srv = ServerBuilder::new()
        .arg("--no-authority")
        .data_dir(&dir)
        .start();
    assert_eq!(v4_answers(&srv), v4b);
    assert_eq!(v6_answers(&srv), v6a);
    stop(srv);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

#[test]
fn a_missing_shard_directory_stops_the_start() {
    let data = TempDir::new("missing-shard");
    let dir = data.path().join("data");
    let srv = ServerBuilder::new()
        .arg("--no-authority")
        .import(demo())
        .data_dir(&dir)
        .start();
    let v4a = v4_answers(&srv);
    stop(srv);
    assert_eq!(std::fs::read_to_string(dir.join("shards")).unwrap(), "2\n");
    let saved = data.path().join("shard-1.saved");
    copy_dir(&dir.join("shard-1"), &saved);
    std::fs::remove_dir_all(dir.join("shard-1")).unwrap();
    for shards in [2, 1] {
        let log = match ServerBuilder::new()
            .arg("--no-authority")
            .shards(shards)
            .data_dir(&dir)
            .try_start()
        {
            Ok(_) => panic!("started with shard-1 missing ({shards} shards)"),
            Err(log) => log,
        };
        assert!(log.contains("shard-1: missing"), "{log}");
        assert!(log.contains("records 2 shards"), "{log}");
    }
    // An emptied shard directory is refused too.
    std::fs::create_dir_all(dir.join("shard-1")).unwrap();
    assert!(ServerBuilder::new()
        .arg("--no-authority")
        .data_dir(&dir)
        .try_start()
        .is_err());
    // Put back, a shard-count change on purpose works and keeps every binding.
    std::fs::remove_dir_all(dir.join("shard-1")).unwrap();
    copy_dir(&saved, &dir.join("shard-1"));
    let srv = ServerBuilder::new()
        .arg("--no-authority")
        .shards(1)
        .data_dir(&dir)
        .start();
    assert_eq!(v4_answers(&srv), v4a);
    stop(srv);
    assert_eq!(std::fs::read_to_string(dir.join("shards")).unwrap(), "1\n");
    assert!(!dir.join("shard-1").exists());
}
