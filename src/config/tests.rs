use super::*;

#[test]
fn defaults_are_loopback_and_rfc_limits() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.lq6_listen, "[::1]:547".parse().unwrap());
    assert_eq!(c.lq4_listen, "127.0.0.1:67".parse().unwrap());
    assert_eq!(c.max_connections, 10);
    assert_eq!(c.bulk_lq_data_timeout, 300);
    assert!(!c.active && !c.allow_insecure_active);
    assert!(c.allowed("127.0.0.1".parse().unwrap()));
    assert!(c.allowed("::1".parse().unwrap()));
    assert!(c.allowed("::ffff:127.0.0.9".parse().unwrap()));
    assert!(!c.allowed("192.0.2.1".parse().unwrap()));
    assert!(!c.allowed("::2".parse().unwrap()));
}

#[test]
fn toml_keys_and_errors() {
    let c =
        Config::from_toml("shards = 2\nlq6_listen = \"[::1]:10547\"\nallow = [\"10.0.0.0/8\"]\n")
            .unwrap();
    assert_eq!(c.shards, 2);
    assert_eq!(c.lq6_listen.port(), 10547);
    assert!(c.allowed("10.1.2.3".parse().unwrap()));
    assert!(!c.allowed("11.0.0.1".parse().unwrap()));
    let e = Config::from_toml("shardz = 2").unwrap_err();
    assert!(e.contains("shardz"), "{e}");
    let e = Config::from_toml("allow = [\"10.0.0.0/33\"]").unwrap_err();
    assert!(e.contains("bad prefix length"), "{e}");
}

#[test]
fn flags_override_the_file_and_validation_names_the_key() {
    let flags = Flags {
        shards: Some(3),
        active: true,
        ..Default::default()
    };
    let mut c = Config::from_toml("shards = 2").unwrap();
    c.apply(&flags);
    assert_eq!(c.shards, 3);
    assert!(c.active);
    let c = Config {
        allow_insecure_active: true,
        ..Config::default()
    };
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("allow_insecure_active"), "{e}");
    let c = Config {
        max_connections: 0,
        ..Config::default()
    };
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("max_connections"));
    let c = Config {
        server_duid: Some("zz".into()),
        ..Config::default()
    };
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("server_duid"));
    let mut c = Config::from_toml("udp_recv_buffer = 1000").unwrap();
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("udp_recv_buffer"));
    c.apply(&Flags {
        udp_recv_buffer: Some(1 << 20),
        ..Default::default()
    });
    assert_eq!(c.udp_recv_buffer, 1 << 20);
    c.validate().unwrap();
    assert_eq!(Config::default().udp_recv_buffer, 4 << 20);
    for bad in [
        "active_fanout_pending = 0",
        "active_fanout_pending = 16777217",
    ] {
        let e = Config::from_toml(bad)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("active_fanout_pending"), "{bad}: {e}");
    }
    let c = Config::from_toml("active_fanout_pending = 16").unwrap();
    c.validate().unwrap();
    assert_eq!(c.active_fanout_pending, 16);
    assert_eq!(Config::default().active_fanout_pending, 262_144);
}

/// The config profiles of tuning/profiles/ load, validate, and set what they are about.
#[test]
fn the_tuning_profiles_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/profiles");
    let load = |name: &str| {
        let c = Config::from_file(&dir.join(name)).unwrap();
        c.validate().unwrap();
        c
    };
    let l = load("latency.toml");
    assert_eq!((l.spin_before_park_us, l.chunk_size), (50, 65537));
    assert!(l.active && l.allow_insecure_active);
    let t = load("throughput.toml");
    assert_eq!((t.chunk_size, t.credits_per_shard), (1 << 20, 4));
    let d = load("durable.toml");
    assert!(d.data_dir.is_some());
    assert_eq!(d.authority_config().validate().unwrap().subnets.len(), 2);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["durable.toml", "latency.toml", "throughput.toml"]);
}

#[test]
fn the_example_file_loads_with_its_authority_and_bad_subnets_are_named() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/leasequeryd.toml");
    let c = Config::from_file(&path).unwrap();
    c.validate().unwrap();
    let a = c.authority_config().validate().unwrap();
    assert_eq!(a.subnets.len(), 2);
    assert_eq!(
        c.data_dir.as_deref(),
        Some(std::path::Path::new("/var/lib/leasequeryd"))
    );
    // No [authority] table: the demo setup.
    assert_eq!(
        Config::default().authority_config(),
        crate::authority::AuthorityConfig::demo()
    );
    // A bad subnet stops the start, naming the subnet and the field.
    let bad = Config::from_toml(
        "[authority]\n[[authority.subnet]]\nname = \"x\"\nlinks = [\"::1/128\"]\n\
         pool = \"10.0.0.0/33\"\nlease_time = 60\nrenew_time = 30\nrebind_time = 50\n",
    )
    .unwrap();
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("authority") && e.contains("pool"), "{e}");
    // Off: no validation of the (absent) authority and no listener.
    let mut off = bad.clone();
    off.authority_enabled = false;
    off.validate().unwrap();
}

fn invalid(text: &str) -> String {
    Config::from_toml(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .validate()
        .expect_err(text)
        .to_string()
}

/// Issue 19 item 2: durations near 2^63 s passed validation and overflowed `Instant +
/// Duration` at run time; every duration now has a maximum, named in the error.
#[test]
fn every_duration_has_a_sane_maximum() {
    for key in [
        "bulk_lq_data_timeout",
        "active_idle_timeout",
        "active_send_timeout",
    ] {
        for v in ["86401", "9223372036854775807"] {
            let e = invalid(&format!("{key} = {v}"));
            assert!(e.contains(key) && e.contains("86400"), "{key} = {v}: {e}");
        }
        assert!(invalid(&format!("{key} = 0")).contains(key));
        Config::from_toml(&format!("{key} = 86400"))
            .unwrap()
            .validate()
            .unwrap();
    }
    for v in ["3601", "9223372036854775807"] {
        let e = invalid(&format!("shutdown_deadline = {v}"));
        assert!(e.contains("shutdown_deadline") && e.contains("3600"), "{e}");
    }
    for v in ["0", "3600"] {
        let c = Config::from_toml(&format!("shutdown_deadline = {v}")).unwrap();
        c.validate().unwrap();
    }
    // Flags go through the same check.
    let flags = Flags {
        shutdown_deadline: Some(u64::MAX),
        ..Default::default()
    };
    let e = Config::load(&flags).unwrap_err().to_string();
    assert!(e.contains("shutdown_deadline"), "{e}");
    // What reaches a timer is capped even when validation was skipped.
    let c = Config {
        bulk_lq_data_timeout: u64::MAX,
        ..Config::default()
    };
    assert_eq!(c.data_timeout(), Duration::from_secs(MAX_DATA_TIMEOUT_SECS));
    // The shutdown deadlines: checked arithmetic, whatever the value.
    let now = std::time::Instant::now();
    assert_eq!(
        crate::shard::deadline_after(now, Duration::from_secs(5)),
        now + Duration::from_secs(5)
    );
    for secs in [u64::MAX, i64::MAX as u64] {
        assert!(crate::shard::deadline_after(now, Duration::from_secs(secs)) > now);
    }
}

/// Issue 19 item 5: a bad `log` filter was accepted silently (and replaced by "info").
#[test]
fn a_bad_log_filter_is_refused_naming_the_key() {
    let e = invalid("log = \"bogus[[[\"");
    assert!(e.contains("log") && e.contains("bogus[[["), "{e}");
    let e = invalid("log = \"info,leasequery=loud\"");
    assert!(e.contains("log"), "{e}");
    for ok in ["info", "leasequery=debug,warn", "off"] {
        Config::from_toml(&format!("log = \"{ok}\""))
            .unwrap()
            .validate()
            .unwrap();
    }
}

/// Issue 19 item 5: sources are normalized from v4-mapped to IPv4; allow-list blocks now
/// are too, so a mapped block admits the IPv4 requestor it names.
#[test]
fn v4_mapped_allow_blocks_admit_their_ipv4_requestors() {
    let c = Config::from_toml("allow = [\"::ffff:127.0.0.1/128\"]").unwrap();
    c.validate().unwrap();
    assert_eq!(c.allow, vec!["127.0.0.1/32".parse::<Cidr>().unwrap()]);
    assert!(c.allowed("127.0.0.1".parse().unwrap()));
    assert!(c.allowed("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!c.allowed("127.0.0.2".parse().unwrap()));
    let b: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
    assert_eq!(b, "10.0.0.0/8".parse().unwrap());
    assert!(b.contains("10.9.9.9".parse().unwrap()));
    let all: Cidr = "::ffff:0.0.0.0/96".parse().unwrap();
    assert!(all.contains("203.0.113.1".parse().unwrap()));
    // A block wider than the mapped range stays IPv6.
    let wide: Cidr = "::ffff:0.0.0.0/80".parse().unwrap();
    assert!(wide.addr.is_ipv6());
    let flags = Flags {
        allow: vec!["::ffff:127.0.0.1".parse().unwrap()],
        ..Default::default()
    };
    assert!(Config::load(&flags)
        .unwrap()
        .allowed("127.0.0.1".parse().unwrap()));
}

/// Issue 19 item 5: two `[[authority.subnet]]` with one name were accepted.
#[test]
fn duplicate_subnet_names_are_refused() {
    let subnet = |pool: &str| {
        format!(
            "[[authority.subnet]]\nname = \"a\"\nlinks = [\"::1/128\"]\npool = \"{pool}\"\n\
             lease_time = 60\nrenew_time = 30\nrebind_time = 50\n"
        )
    };
    let text = format!(
        "[authority]\n{}{}",
        subnet("192.0.2.0/24"),
        subnet("198.51.100.0/24")
    );
    let e = invalid(&text);
    assert!(
        e.contains("\"a\"") && e.contains("name") && e.contains("unique"),
        "{e}"
    );
    let text = text.replacen("name = \"a\"", "name = \"b\"", 1);
    Config::from_toml(&text).unwrap().validate().unwrap();
}

/// Issue 19 item 5: option 54 defaulted to 127.0.0.1 whatever lq4_listen was; it now comes
/// from lq4_listen, and must be set when that is not one IPv4 address.
#[test]
fn server_id_comes_from_the_listener_or_must_be_set() {
    let id = |text: &str| {
        let c = Config::from_toml(text).unwrap();
        c.validate().unwrap();
        c.v4_server_id().unwrap().to_string()
    };
    assert_eq!(id(""), "127.0.0.1");
    assert_eq!(id("lq4_listen = \"192.0.2.7:67\""), "192.0.2.7");
    assert_eq!(id("lq4_listen = \"[::ffff:192.0.2.8]:67\""), "192.0.2.8");
    assert_eq!(
        id("lq4_listen = \"0.0.0.0:67\"\nserver_id = \"192.0.2.9\""),
        "192.0.2.9"
    );
    assert_eq!(
        id("lq4_listen = \"192.0.2.7:67\"\nserver_id = \"192.0.2.9\""),
        "192.0.2.9"
    );
    for text in ["lq4_listen = \"0.0.0.0:67\"", "lq4_listen = \"[::]:67\""] {
        let e = invalid(text);
        assert!(e.contains("server_id") && e.contains("lq4_listen"), "{e}");
    }
    let e = invalid("server_id = \"0.0.0.0\"");
    assert!(e.contains("server_id"), "{e}");
}

/// Issue 19 item 5: without `[authority]` the demo pools were served on any address; they
/// are now served only on a loopback `dhcp4o6_listen`.
#[test]
fn demo_pools_are_served_on_loopback_only() {
    for addr in ["[2001:db8::1]:547", "[::]:547", "0.0.0.0:547"] {
        let e = invalid(&format!("dhcp4o6_listen = \"{addr}\""));
        assert!(
            e.contains("dhcp4o6_listen")
                && e.contains("[authority]")
                && e.contains("authority_enabled"),
            "{e}"
        );
    }
    for ok in [
        "dhcp4o6_listen = \"[::1]:547\"",
        "dhcp4o6_listen = \"127.0.0.1:547\"",
        "dhcp4o6_listen = \"[::]:547\"\nauthority_enabled = false",
    ] {
        Config::from_toml(ok).unwrap().validate().unwrap();
    }
    let mut flags = Flags {
        dhcp4o6_listen: Some("[::]:547".parse().unwrap()),
        ..Default::default()
    };
    assert!(Config::load(&flags).is_err());
    flags.no_authority = true;
    Config::load(&flags).unwrap();
    // With its own [authority] the listener may be anywhere.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/leasequeryd.toml");
    let mut c = Config::from_file(&path).unwrap();
    c.dhcp4o6_listen = "[::]:547".parse().unwrap();
    c.validate().unwrap();
}

/// Issue 19 item 5: `max_connections` above the open-file limit was not mentioned.
#[test]
fn max_connections_above_the_open_file_limit_is_warned_with_both_numbers() {
    let c = Config {
        max_connections: 5000,
        shards: 2,
        ..Config::default()
    };
    let w = c.limit_warnings(Some(1024));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("5000") && w[0].contains("1024"), "{}", w[0]);
    assert!(c.limit_warnings(Some(1 << 20)).is_empty());
    assert!(c.limit_warnings(None).is_empty());
    assert!(Config::default().limit_warnings(Some(1024)).is_empty());
    let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                  Max processes             63469                63469                processes \n\
                  Max open files            1024                 524288               files     \n";
    assert_eq!(parse_open_file_limit(limits), Some(1024));
    let unlimited = "Max open files            unlimited            unlimited            files\n";
    assert_eq!(parse_open_file_limit(unlimited), None);
    // This host's own limit reads (Linux).
    assert!(open_file_limit().is_some_and(|n| n > 0));
}

#[test]
fn cidr_edges() {
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("203.0.113.1".parse().unwrap()));
    assert!(!all.contains("2001:db8::1".parse().unwrap()));
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
    assert!(!v6.contains("2001:db9::1".parse().unwrap()));
    assert!("1.2.3.4/x".parse::<Cidr>().is_err());
    assert_eq!(hex_decode("00:01:0a"), Some(vec![0, 1, 10]));
    assert_eq!(hex_decode("0"), None);
}

#[test]
fn effective_toml_round_trips() {
    // The defaults: the printed text loads back to the same server (the demo authority and the
    // derived server_id written out).
    let c = Config::default();
    let text = c.effective_toml().unwrap();
    let back = Config::from_toml(&text).unwrap();
    back.validate().unwrap();
    assert_eq!(back.authority, Some(c.authority_config()));
    assert_eq!(back.server_id, c.v4_server_id());
    assert_eq!(
        Config {
            authority: None,
            server_id: None,
            ..back
        },
        c
    );
    // A mapped allow-list block prints as the IPv4 block it is.
    let cidr: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
    assert_eq!(cidr.to_string(), "10.0.0.0/8");
    // Without the authority, no [authority] table appears.
    let off = Config {
        authority_enabled: false,
        ..Config::default()
    };
    assert!(!off.effective_toml().unwrap().contains("[authority]"));
}

#[test]
fn check_files_names_the_key() {
    let c = Config {
        import: Some("/nonexistent/leases.jsonl".into()),
        ..Config::default()
    };
    assert!(c.check_files().unwrap_err().to_string().contains("import"));
    let c = Config {
        import: Some("/".into()),
        ..Config::default()
    };
    assert!(c
        .check_files()
        .unwrap_err()
        .to_string()
        .contains("directory"));
    let c = Config {
        data_dir: Some("/proc/self/status".into()),
        ..Config::default()
    };
    assert!(c
        .check_files()
        .unwrap_err()
        .to_string()
        .contains("data_dir"));
    // A data_dir or feed that does not exist yet is created or awaited at start.
    let c = Config {
        data_dir: Some("/nonexistent/lqd".into()),
        feed: Some("/nonexistent/feed.jsonl".into()),
        ..Config::default()
    };
    assert!(c.check_files().unwrap().is_empty());
    // A feed path that is a directory: the start serves and logs it, so a warning, not an error.
    let c = Config {
        feed: Some("/".into()),
        ..Config::default()
    };
    let w = c.check_files().unwrap();
    assert!(w.len() == 1 && w[0].contains("feed"), "{w:?}");
}

#[test]
fn tls_keys_parse_validate_and_print_back() {
    use crate::session::TlsMode;
    let c = Config::default();
    assert_eq!(c.tls, TlsMode::Off);
    assert_eq!(c.tls_handshake_timeout, 10);
    let text = "tls = \"required\"\ntls_cert = \"/etc/lqd/s.pem\"\ntls_key = \"/etc/lqd/s.key\"\n\
                tls_client_ca = \"/etc/lqd/ca.pem\"\n\
                tls_allowed_requestors = [\"dns:lq1.example.net\", \"cn:lq2\"]\n\
                tls_handshake_timeout = 5\n";
    let c = Config::from_toml(text).unwrap();
    c.validate().unwrap();
    assert_eq!(c.tls, TlsMode::Required);
    assert_eq!(c.tls_allowed_requestors.len(), 2);
    assert_eq!(c.session_policy().tls, TlsMode::Required);
    // The effective configuration loads back the same.
    let back = Config::from_toml(&c.effective_toml().unwrap()).unwrap();
    assert_eq!(back.tls_allowed_requestors, c.tls_allowed_requestors);
    assert_eq!((back.tls, back.tls_key.clone()), (c.tls, c.tls_key.clone()));
    // tls on without one of the files names it.
    for key in ["tls_cert", "tls_key", "tls_client_ca"] {
        let t: String = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = Config::from_toml(&t).unwrap().validate().unwrap_err();
        assert!(e.to_string().contains(key), "{e}");
    }
    for bad in ["tls = \"on\"", "tls_allowed_requestors = [\"ip:1.2.3.4\"]"] {
        let e = Config::from_toml(bad).unwrap_err();
        assert!(e.contains("tls"), "{e}");
    }
    let e = Config::from_toml("tls_handshake_timeout = 0")
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(e.to_string().contains("tls_handshake_timeout"), "{e}");
    // The flags override the file.
    let flags = Flags::parse_from([
        "leasequeryd",
        "--tls",
        "optional",
        "--tls-cert",
        "/a.pem",
        "--tls-key",
        "/a.key",
        "--tls-client-ca",
        "/ca.pem",
    ]);
    let mut c = Config::default();
    c.apply(&flags);
    assert_eq!(c.tls, TlsMode::Optional);
    assert_eq!(c.tls_client_ca.as_deref(), Some(Path::new("/ca.pem")));
    c.validate().unwrap();
    assert!(Flags::try_parse_from(["leasequeryd", "--tls", "on"]).is_err());
}
