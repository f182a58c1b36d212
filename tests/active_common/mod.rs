//! Shared support of the active leasequery tests: a server with a feed file and active
//! leasequery on (timers shortened through the config file), feed lines, queries, and a reader
//! that classifies what arrives.
#![allow(dead_code)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::common::{Conn, Server, ServerBuilder, TempDir};
use leasequery::proto::codes::{v4msg, v4opt, v6msg, v6opt};
use leasequery::proto::v4::{self, V4Option};
use leasequery::proto::v6::{self, V6Option};

pub const REQUESTOR: [u8; 10] = [0, 3, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
pub const EPOCH_2000: u32 = 946_684_800;
pub const EXPIRES: u32 = 1_900_000_000;

pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// A server with `active`, `allow_insecure_active`, a feed file and extra config lines.
pub struct Env {
    pub srv: Server,
    pub feed: PathBuf,
    pub dir: TempDir,
}

impl Env {
    pub fn start(extra_config: &str, import: Option<String>) -> Env {
        let dir = TempDir::new("active");
        let feed = dir.path().join("feed.jsonl");
        std::fs::write(&feed, "").unwrap();
        let cfg = dir.path().join("lqd.toml");
        // Defaults of the tests, unless `extra_config` sets the key.
        let mut text = String::new();
        for d in [
            "active = true",
            "allow_insecure_active = true",
            "active_idle_timeout = 1",
            "active_send_timeout = 2",
            "log = \"info\"",
        ] {
            let key = d.split(' ').next().unwrap_or("");
            let set = |l: &str| l.split('=').next().is_some_and(|k| k.trim() == key);
            if !extra_config.lines().any(set) {
                text.push_str(d);
                text.push('\n');
            }
        }
        text.push_str(extra_config);
        std::fs::write(&cfg, text).unwrap();
        let mut b = ServerBuilder::new()
            .arg("--config")
            .arg(cfg.display().to_string())
            .arg("--feed")
            .arg(feed.display().to_string());
        if let Some(i) = import {
            b = b.import(i);
        }
        Env {
            srv: b.start(),
            feed,
            dir,
        }
    }

    /// Appends lines (each gets its newline) to the feed file.
    pub fn append(&self, lines: &[String]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.feed)
            .unwrap();
        let mut all = String::new();
        for l in lines {
            all.push_str(l);
            all.push('\n');
        }
        f.write_all(all.as_bytes()).unwrap();
    }

    pub fn append_raw(&self, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.feed)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
}

/// The address of binding number `i`.
pub fn addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

/// A plain v4 feed line for binding `i`.
pub fn v4_line(i: u32, state: &str, cltt: u32) -> String {
    let a = addr(i);
    let o = a.octets();
    format!(
        r#"{{"ipv4":"{a}","chaddr":"02:00:{:02x}:{:02x}:{:02x}:{:02x}","state":"{state}","cltt":{cltt},"expires":{EXPIRES}}}"#,
        o[0], o[1], o[2], o[3]
    )
}

/// A DHCP4o6 feed line for binding `i` (softwire source 2001:db8:1::i).
pub fn o6_line(i: u32, state: &str, cltt: u32) -> String {
    let a = addr(i);
    let o = a.octets();
    format!(
        r#"{{"ipv4":"{a}","chaddr":"02:00:{:02x}:{:02x}:{:02x}:{:02x}","state":"{state}","cltt":{cltt},"expires":{EXPIRES},"link":"2001:db8:1::","softwire_src":"2001:db8:1::{:x}"}}"#,
        o[0],
        o[1],
        o[2],
        o[3],
        i & 0xffff
    )
}

/// A plain v6 feed line for binding `i` on link 2001:db8:2::.
pub fn v6_line(i: u32, cltt: u32) -> String {
    format!(
        r#"{{"duid":"00030001{i:08x}","link":"2001:db8:2::","iana":[{{"addr":"2001:db8:2::{:x}","preferred":3600,"valid":7200}}],"cltt":{cltt}}}"#,
        i & 0xffff
    )
}

pub fn encode6(m: &v6::Message) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    b
}

pub fn encode4(m: &v4::Message) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    b
}

/// ACTIVELEASEQUERY with the requestor's Client-ID and `opts`.
pub fn active6(xid: u32, opts: Vec<V6Option>) -> Vec<u8> {
    let mut options = vec![V6Option::ClientId(REQUESTOR.to_vec())];
    options.extend(opts);
    encode6(&v6::Message {
        msg_type: v6msg::ACTIVELEASEQUERY,
        xid,
        options,
    })
}

/// DHCPACTIVELEASEQUERY with PRL [156] and an optional query-start-time.
pub fn active4_msg(xid: u32, start: Option<u32>) -> v4::Message {
    leasequery::requestor::ActiveQuery {
        xid,
        duid: &REQUESTOR,
        start,
        oro: &[],
        prl: &[v4opt::DHCP_STATE],
    }
    .v4_message()
}

pub fn active4(xid: u32, start: Option<u32>) -> Vec<u8> {
    encode4(&active4_msg(xid, start))
}

/// A DHCP4o6 ACTIVELEASEQUERY following every 4o6 binding (ORO at message level asks for
/// S46_V4V6BIND and base-time).
pub fn active4o6(xid6: u32, xid4: u32, start6: Option<u32>) -> Vec<u8> {
    let mut opts = vec![V6Option::Oro(vec![
        v6opt::S46_V4V6BIND,
        v6opt::LQ_BASE_TIME,
    ])];
    if let Some(s) = start6 {
        opts.push(V6Option::LqStartTime(s));
    }
    opts.push(V6Option::Dhcpv4Msg(active4(xid4, None)));
    active6(xid6, opts)
}

/// What one received message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// v6 LEASEQUERY-REPLY (status code if any).
    Reply(Option<u16>),
    /// A binding update: the v4 address (v4 / 4o6) or the v6 DUID's last 4 octets as a number,
    /// whether it is bound (LEASEACTIVE / non-zero lifetimes), the v4 dhcp-state option if sent.
    Update { key: u32, bound: bool },
    /// A status message (v6 DATA/DONE status, or v4 STATUS / DONE status), with the v6 or v4 code.
    Status { done: bool, code: u16 },
    /// A keepalive.
    Keepalive,
}

/// Classifies a v6 (or DHCP4o6) message; checks the xids.
pub fn classify6(bytes: &[u8], xid6: u32, xid4: Option<u32>) -> Got {
    let m = v6::Message::decode(bytes).expect("a DHCPv6 message");
    assert_eq!(m.xid, xid6, "v6 xid");
    let status = m.options.iter().find_map(|o| match o {
        V6Option::StatusCode { code, .. } => Some(*code),
        _ => None,
    });
    let inner = m.options.iter().find_map(|o| match o {
        V6Option::Dhcpv4Msg(b) => Some(v4::Message::decode(b).expect("inner DHCPv4")),
        _ => None,
    });
    if let (Some(x), Some(i)) = (xid4, &inner) {
        assert_eq!(i.xid, x, "v4 xid inside option 87");
    }
    let cd = m.options.iter().find_map(|o| match o {
        V6Option::ClientData(c) => Some(c.clone()),
        _ => None,
    });
    match m.msg_type {
        v6msg::LEASEQUERY_REPLY => Got::Reply(status),
        v6msg::LEASEQUERY_DONE => Got::Status {
            done: true,
            code: status.expect("DONE of an active query carries a status"),
        },
        v6msg::LEASEQUERY_DATA => {
            if let Some(code) = status {
                return Got::Status { done: false, code };
            }
            match (cd, inner) {
                (None, _) => Got::Keepalive,
                (Some(_), Some(i)) => Got::Update {
                    key: u32::from(i.ciaddr) - 0x0a00_0000,
                    bound: i.message_type() == Some(v4msg::LEASEACTIVE),
                },
                (Some(c), None) => {
                    let duid = c
                        .iter()
                        .find_map(|o| match o {
                            V6Option::ClientId(d) => Some(d.clone()),
                            _ => None,
                        })
                        .expect("CLIENT_DATA has the client's DUID");
                    let n = u32::from_be_bytes(duid[duid.len() - 4..].try_into().unwrap());
                    let bound = c
                        .iter()
                        .any(|o| matches!(o, V6Option::IaAddr { valid, .. } if *valid > 0));
                    Got::Update { key: n, bound }
                }
            }
        }
        t => panic!("unexpected v6 message type {t}"),
    }
}

/// Classifies a DHCPv4 message; checks the xid.
pub fn classify4(bytes: &[u8], xid: u32) -> Got {
    let m = v4::Message::decode(bytes).expect("a DHCPv4 message");
    assert_eq!(m.xid, xid, "v4 xid");
    let status = m.options.iter().find_map(|o| match o {
        V4Option::StatusCode { code, .. } => Some(u16::from(*code)),
        _ => None,
    });
    match m.message_type() {
        Some(v4msg::LEASEACTIVE) | Some(v4msg::LEASEUNASSIGNED) => Got::Update {
            key: u32::from(m.ciaddr) - 0x0a00_0000,
            bound: m.message_type() == Some(v4msg::LEASEACTIVE),
        },
        Some(v4msg::LEASEQUERYSTATUS) => match status {
            Some(6) => Got::Keepalive,
            Some(code) => Got::Status { done: false, code },
            None => Got::Status {
                done: false,
                code: 0,
            },
        },
        Some(v4msg::LEASEQUERYDONE) => Got::Status {
            done: true,
            code: status.unwrap_or(0),
        },
        t => panic!("unexpected v4 message type {t:?}"),
    }
}

/// A subscriber of one of the three forms.
pub struct Sub {
    pub c: Conn,
    pub form: Form,
    /// Keepalives keep a connection from ever timing out a read, so every wait is also
    /// bounded by this deadline (a missing message fails the test instead of hanging it).
    pub deadline: std::time::Instant,
}

/// How long one subscriber may wait in all for what a test expects.
pub const SUB_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub enum Form {
    V6 { xid: u32 },
    V4 { xid: u32 },
    O6 { xid6: u32, xid4: u32 },
}

impl Sub {
    pub fn v6(env: &Env, xid: u32, opts: Vec<V6Option>) -> Sub {
        let mut c = env.srv.connect6();
        c.send(&active6(xid, opts));
        Sub {
            c,
            form: Form::V6 { xid },
            deadline: std::time::Instant::now() + SUB_DEADLINE,
        }
    }
    pub fn v4(env: &Env, xid: u32, start: Option<u32>) -> Sub {
        let mut c = env.srv.connect4();
        c.send(&active4(xid, start));
        Sub {
            c,
            form: Form::V4 { xid },
            deadline: std::time::Instant::now() + SUB_DEADLINE,
        }
    }
    /// A v4 subscriber known to be registered before the caller goes on: DHCPv4 active
    /// leasequery sends nothing when a live query is accepted, so this one asks for a catch-up
    /// from now (empty when no change came since) and waits for its CatchUpComplete. Without
    /// it a change appended right after subscribing can race the subscription.
    pub fn v4_ready(env: &Env, xid: u32) -> Sub {
        let mut s = Sub::v4(env, xid, Some(unix_now()));
        loop {
            match s.next_real() {
                Some(Got::Status {
                    done: false,
                    code: 7,
                }) => return s,
                Some(Got::Update { .. }) => continue,
                other => panic!("expected CatchUpComplete, got {other:?}"),
            }
        }
    }
    pub fn o6(env: &Env, xid6: u32, xid4: u32, start6: Option<u32>) -> Sub {
        let mut c = env.srv.connect6();
        c.send(&active4o6(xid6, xid4, start6));
        Sub {
            c,
            form: Form::O6 { xid6, xid4 },
            deadline: std::time::Instant::now() + SUB_DEADLINE,
        }
    }
    /// The next message, classified; `None` when the server closed.
    pub fn next(&mut self) -> Option<Got> {
        assert!(
            std::time::Instant::now() < self.deadline,
            "subscriber waited past its {SUB_DEADLINE:?} deadline"
        );
        let b = self.c.recv()?;
        Some(match self.form {
            Form::V6 { xid } => classify6(&b, xid, None),
            Form::V4 { xid } => classify4(&b, xid),
            Form::O6 { xid6, xid4 } => classify6(&b, xid6, Some(xid4)),
        })
    }
    /// The next message that is not a keepalive.
    pub fn next_real(&mut self) -> Option<Got> {
        loop {
            match self.next()? {
                Got::Keepalive => continue,
                g => return Some(g),
            }
        }
    }
    /// Reads updates until every key of `want` was seen (keepalives skipped); returns every
    /// update seen (key, bound) in order. Panics (read timeout) when one never comes.
    pub fn until_seen(&mut self, want: &[u32]) -> Vec<(u32, bool)> {
        let mut left: std::collections::HashSet<u32> = want.iter().copied().collect();
        let mut seen = Vec::new();
        while !left.is_empty() {
            match self.next_real().expect("connection open") {
                Got::Update { key, bound } => {
                    left.remove(&key);
                    seen.push((key, bound));
                }
                g => panic!("unexpected {g:?} while waiting for {} updates", left.len()),
            }
        }
        seen
    }
}
