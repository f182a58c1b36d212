//! Configuration: a TOML file (`--config FILE`) holds every setting, command-line flags override
//! it, and running with neither works: the defaults listen on loopback only.
//!
//! Every key is documented in the README ("Configuration"); unknown keys are an error, so a typo
//! in a file is caught at start instead of silently ignored.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::proto::framing::MAX_FRAME;

/// The default for the `journal_compact_bytes` config key: the shell snapshots a shard when
/// its journal segments since the last snapshot exceed this many octets (256 MiB). Kept here,
/// not in `store`, so that the configuration does not depend on the journal (glommio DMA).
pub const DEFAULT_JOURNAL_COMPACT_BYTES: u64 = 256 << 20;

/// RFC 5460 §5.6 / RFC 6926 §6.3 BULK_LQ_DATA_TIMEOUT.
pub const BULK_LQ_DATA_TIMEOUT_SECS: u64 = 300;
/// RFC 5460 §5.6 / RFC 6926 §6.3 BULK_LQ_MAX_CONNS.
pub const BULK_LQ_MAX_CONNS: usize = 10;
/// RFC 7653 §6.4 / RFC 7724 §5.3 ACTIVE_LQ_IDLE_TIMEOUT (keepalive interval).
pub const ACTIVE_LQ_IDLE_TIMEOUT_SECS: u64 = 60;
/// RFC 7653 §6.4 / RFC 7724 §5.3 ACTIVE_LQ_SEND_TIMEOUT.
pub const ACTIVE_LQ_SEND_TIMEOUT_SECS: u64 = 120;
/// Default SO_RCVBUF of the DHCP4o6 UDP sockets: 4 MiB (tuning/README.md: with the kernel's
/// default buffer, 512 clients in flight overflowed it).
pub const DEFAULT_UDP_RECV_BUFFER: usize = 4 * 1024 * 1024;
/// Largest `bulk_lq_data_timeout`, `active_idle_timeout` and `active_send_timeout`: one day. A
/// larger value has no use (a requestor silent for a day is gone) and, near 2^63 seconds, an
/// `Instant` plus it overflows.
pub const MAX_DATA_TIMEOUT_SECS: u64 = 86_400;
/// Largest `shutdown_deadline`: one hour (systemd's default stop timeout is 90 s).
pub const MAX_SHUTDOWN_DEADLINE_SECS: u64 = 3_600;
/// File descriptors a running server holds besides its requestor connections: per shard (the
/// glommio rings and their eventfds, two listeners, the DHCP4o6 socket, journal files, mesh
/// wake-ups) and for the process (stdio, signal pipe, import and feed files).
pub const FDS_PER_SHARD: u64 = 16;
/// See [`FDS_PER_SHARD`].
pub const FDS_BASE: u64 = 32;

/// A CIDR block of the requestor allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    /// True when `ip` is inside the block. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is
    /// matched as the IPv4 address it carries (and a mapped block is parsed as the IPv4 block).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - self.prefix_len as u32)
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - self.prefix_len as u32)
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("{s:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match l {
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?,
            None => max,
        };
        // An IPv4-mapped block (`::ffff:a.b.c.d/96..=128`) is the IPv4 block it maps: sources
        // are matched the same way (see `contains`), so `::ffff:127.0.0.1/128` admits 127.0.0.1.
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix_len >= 96) {
                return Ok(Cidr {
                    addr: IpAddr::V4(v4),
                    prefix_len: prefix_len - 96,
                });
            }
        }
        Ok(Cidr { addr, prefix_len })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The settings of a running server. Field names are the TOML keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Executor shards (one pinned glommio executor each); 0 = one per online CPU.
    pub shards: usize,
    /// Where DHCPv6 (and DHCP4o6) bulk/active leasequery listens, TCP.
    pub lq6_listen: SocketAddr,
    /// Where DHCPv4 bulk/active leasequery listens, TCP.
    pub lq4_listen: SocketAddr,
    /// A JSON-lines lease file loaded at start (README "Import file format").
    pub import: Option<PathBuf>,
    /// A JSON-lines lease file in the import format followed as it grows; every line is a
    /// binding change (README "Feed file").
    pub feed: Option<PathBuf>,
    /// Most requestor connections at once, over all shards and both listeners (RFC 5460 §7.1).
    pub max_connections: usize,
    /// Most queries one connection runs at once; further queries wait in the socket (RFC 5460 §7.3).
    pub max_queries_per_connection: usize,
    /// Seconds a connection may be idle (no query running) or blocked on send before it is closed
    /// (BULK_LQ_DATA_TIMEOUT, RFC 5460 §5.6).
    pub bulk_lq_data_timeout: u64,
    /// Requestors allowed to connect (CIDR blocks); others are closed at once.
    pub allow: Vec<Cidr>,
    /// Seconds a shutdown (SIGTERM/SIGINT) may take before the process exits anyway.
    pub shutdown_deadline: u64,
    /// Microseconds an idle executor spins before parking (0 = park at once). Spinning trades CPU
    /// for cross-core wake-up latency.
    pub spin_before_park_us: u64,
    /// Size of one reply chunk (one socket write), octets.
    pub chunk_size: usize,
    /// Chunks a shard may have in flight per bulk query before it waits for the connection's shard.
    pub credits_per_shard: usize,
    /// This server's DUID (hex) for OPTION_SERVERID; default: derived from /etc/machine-id.
    pub server_duid: Option<String>,
    /// The DHCPv4 server identifier (option 54) sent in v4 replies; default: the address of
    /// `lq4_listen` when that is one IPv4 address (required otherwise, e.g. for `0.0.0.0`).
    pub server_id: Option<std::net::Ipv4Addr>,
    /// Serve active leasequery (RFC 7653, RFC 7724). Off by default (RFC 7653 §9.1).
    pub active: bool,
    /// Serve active leasequery without TLS: a second, separate switch (RFC 7653 §9.1).
    pub allow_insecure_active: bool,
    /// Seconds between keepalives on an idle active query (ACTIVE_LQ_IDLE_TIMEOUT, RFC 7653
    /// §6.4; values below 60 SHOULD NOT be used outside tests).
    pub active_idle_timeout: u64,
    /// Seconds an active query's send may stay blocked before the connection is closed
    /// (ACTIVE_LQ_SEND_TIMEOUT, RFC 7653 §9.3; values below 120 SHOULD NOT be used outside tests).
    pub active_send_timeout: u64,
    /// Most distinct bindings waiting for one active subscriber (coalesced backlog); over it the
    /// subscriber gets QueryTerminated and is closed.
    pub active_backlog_bindings: usize,
    /// Most octets waiting for one active subscriber; over it, QueryTerminated and close.
    pub active_backlog_bytes: usize,
    /// Most changes one shard holds for other shards' subscribers before the mesh takes them;
    /// over it the batch is dropped and the subscribers that would miss it get QueryTerminated.
    pub active_fanout_pending: usize,
    /// Most changes each shard keeps for catch-up (the history ring).
    pub history_entries: usize,
    /// Oldest change each shard keeps for catch-up, seconds.
    pub history_age: u64,
    /// Where the DHCP4o6 lease authority listens for DHCPV4-QUERY, UDP (RFC 7341).
    pub dhcp4o6_listen: SocketAddr,
    /// SO_RCVBUF asked for on each shard's DHCP4o6 UDP socket, octets (the kernel caps it at
    /// `net.core.rmem_max` and doubles it for bookkeeping).
    pub udp_recv_buffer: usize,
    /// Run the DHCP4o6 lease authority (UDP) at all.
    pub authority_enabled: bool,
    /// The authority's subnets and timers (`[authority]` with `[[authority.subnet]]` tables);
    /// without it the embedded demo setup runs (README "DHCP4o6 lease authority").
    pub authority: Option<crate::authority::AuthorityConfig>,
    /// Directory of the durable lease journal and the server DUID; none = leases live in
    /// memory only (lost at restart).
    pub data_dir: Option<PathBuf>,
    /// A shard's journal size (octets) past which it writes a snapshot and drops older segments.
    pub journal_compact_bytes: u64,
    /// TLS (STARTTLS on TCP 547, DHCPTLS on TCP 67): `off`, `optional` or `required`
    /// (README "TLS (secure mode)").
    pub tls: crate::session::TlsMode,
    /// The server's certificate chain, PEM.
    pub tls_cert: Option<PathBuf>,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// The CA bundle requestor certificates must chain to, PEM.
    pub tls_client_ca: Option<PathBuf>,
    /// Which requestor certificates are accepted: `dns:NAME`, `uri:URI`, `cn:NAME`,
    /// `spki-sha256:HEX`; empty = any certificate from `tls_client_ca`.
    pub tls_allowed_requestors: Vec<crate::tls::AllowedRequestor>,
    /// Seconds a TLS handshake may take (from the STARTTLS answer) before the connection closes.
    pub tls_handshake_timeout: u64,
    /// tracing filter (e.g. "info", "leasequery=debug").
    pub log: String,
    /// Log line format: `text` (human, the default) or `json` (one JSON object per line, for
    /// log shippers).
    pub log_format: LogFormat,
    /// Where `GET /metrics` (Prometheus text format) and `GET /healthz` are served, HTTP/1.1 on
    /// TCP; `off` serves neither (README "Metrics and health").
    pub metrics_listen: MetricsListen,
    /// The `[cluster]` table (issue 18): the lease-change stream on NATS JetStream; none =
    /// no clustering.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// The `log_format` key / `--log-format` flag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format).
    #[default]
    Text,
    /// JSON lines: `timestamp`, `level`, `target`, `fields` (with `message`), and the spans.
    Json,
}

/// `metrics_listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsListen(pub Option<SocketAddr>);

/// The default `metrics_listen`.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9967";

impl std::str::FromStr for MetricsListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(MetricsListen(None));
        }
        s.parse().map(|a| MetricsListen(Some(a))).map_err(|_| {
            format!("metrics_listen {s:?}: not an address (IP:PORT, [IPv6]:PORT) or \"off\"")
        })
    }
}

impl std::fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("off"),
        }
    }
}

impl Serialize for MetricsListen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MetricsListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: 0,
            lq6_listen: "[::1]:547".parse().expect("literal"),
            lq4_listen: "127.0.0.1:67".parse().expect("literal"),
            import: None,
            feed: None,
            max_connections: BULK_LQ_MAX_CONNS,
            max_queries_per_connection: 4,
            bulk_lq_data_timeout: BULK_LQ_DATA_TIMEOUT_SECS,
            allow: vec![
                "127.0.0.0/8".parse().expect("literal"),
                "::1/128".parse().expect("literal"),
            ],
            shutdown_deadline: 5,
            spin_before_park_us: 0,
            chunk_size: 256 * 1024,
            credits_per_shard: 2,
            server_duid: None,
            server_id: None,
            active: false,
            allow_insecure_active: false,
            active_idle_timeout: ACTIVE_LQ_IDLE_TIMEOUT_SECS,
            active_send_timeout: ACTIVE_LQ_SEND_TIMEOUT_SECS,
            active_backlog_bindings: 100_000,
            active_fanout_pending: 262_144,
            active_backlog_bytes: 64 * 1024 * 1024,
            history_entries: 100_000,
            history_age: 3600,
            dhcp4o6_listen: "[::1]:547".parse().expect("literal"),
            udp_recv_buffer: DEFAULT_UDP_RECV_BUFFER,
            authority_enabled: true,
            authority: None,
            data_dir: None,
            journal_compact_bytes: DEFAULT_JOURNAL_COMPACT_BYTES,
            tls: crate::session::TlsMode::Off,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_allowed_requestors: Vec::new(),
            tls_handshake_timeout: 10,
            log: "info".into(),
            log_format: LogFormat::Text,
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().expect("literal"),
            cluster: None,
        }
    }
}

/// Command-line flags. Each overrides the config key of the same name (dashes for underscores).
#[derive(Debug, Parser, Default)]
#[command(
    name = "leasequeryd",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("LQD_GIT_COMMIT"), ")"),
    about = "DHCP bulk and active leasequery server (DHCPv6, DHCPv4, DHCPv4-over-DHCPv6)"
)]
pub struct Flags {
    /// TOML config file; without one the embedded defaults apply (loopback only).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Executor shards, one pinned per core (default: every online CPU).
    #[arg(long)]
    pub shards: Option<usize>,
    /// DHCPv6 / DHCP4o6 leasequery TCP listen address (default `[::1]:547`).
    #[arg(long, value_name = "ADDR")]
    pub lq6_listen: Option<SocketAddr>,
    /// DHCPv4 leasequery TCP listen address (default 127.0.0.1:67).
    #[arg(long, value_name = "ADDR")]
    pub lq4_listen: Option<SocketAddr>,
    /// JSON-lines lease file to load at start.
    #[arg(long, value_name = "FILE")]
    pub import: Option<PathBuf>,
    /// JSON-lines feed file to follow (every appended line is a binding change).
    #[arg(long, value_name = "FILE")]
    pub feed: Option<PathBuf>,
    /// Most requestor connections at once (default 10).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Most parallel queries per connection (default 4).
    #[arg(long)]
    pub max_queries_per_connection: Option<usize>,
    /// Idle / blocked-send timeout in seconds (default 300).
    #[arg(long, value_name = "SECS")]
    pub bulk_lq_data_timeout: Option<u64>,
    /// Allowed requestor CIDR (repeatable; replaces the configured list).
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<Cidr>,
    /// Shutdown deadline in seconds (default 5).
    #[arg(long, value_name = "SECS")]
    pub shutdown_deadline: Option<u64>,
    /// Spin before park, microseconds (default 0).
    #[arg(long, value_name = "US")]
    pub spin_before_park_us: Option<u64>,
    /// SO_RCVBUF of the DHCP4o6 UDP sockets, octets (default 4194304).
    #[arg(long, value_name = "BYTES")]
    pub udp_recv_buffer: Option<usize>,
    /// Serve active leasequery (off by default).
    #[arg(long)]
    pub active: bool,
    /// Serve active leasequery without TLS (needs --active too).
    #[arg(long)]
    pub allow_insecure_active: bool,
    /// DHCP4o6 authority UDP listen address (default `[::1]:547`).
    #[arg(long, value_name = "ADDR")]
    pub dhcp4o6_listen: Option<SocketAddr>,
    /// Do not run the DHCP4o6 lease authority (no UDP listener).
    #[arg(long)]
    pub no_authority: bool,
    /// Durable lease journal directory (default: none, leases in memory only).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TLS mode: off, optional or required (default off).
    #[arg(long, value_name = "MODE")]
    pub tls: Option<crate::session::TlsMode>,
    /// The server's certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle for requestor certificates (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// tracing filter (default "info").
    #[arg(long)]
    pub log: Option<String>,
    /// Log line format: text (default) or json (JSON lines with timestamp, level, target and
    /// fields).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Prometheus `/metrics` and `/healthz` HTTP listen address, or `off` (default 127.0.0.1:9967).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<MetricsListen>,
    /// Run as a replica of the lease-change stream (`[cluster] role = "replica"`).
    #[arg(long)]
    pub replica: bool,
    /// Check the configuration (the file, the flags, the files it names) as a start would,
    /// print the effective configuration as TOML and exit: 0 when it is valid, 2 with the
    /// start's message when not. Binds no port and writes nothing.
    #[arg(long)]
    pub check_config: bool,
}

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    /// What the sans-io session reads of this configuration.
    pub fn session_policy(&self) -> crate::session::Policy {
        crate::session::Policy {
            active: self.active,
            allow_insecure_active: self.allow_insecure_active,
            tls: self.tls,
        }
    }

    /// Reads and checks a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.into(),
            message,
        })
    }

    /// Parses TOML text (used by [`Config::from_file`] and tests).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The file named by `--config` (if any), then the flags on top, then [`Config::validate`].
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let mut c = match &flags.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        c.apply(flags);
        c.validate()?;
        Ok(c)
    }

    fn apply(&mut self, f: &Flags) {
        macro_rules! over {
            ($($field:ident),*) => { $( if let Some(v) = f.$field.clone() { self.$field = v; } )* };
        }
        over!(
            shards,
            lq6_listen,
            lq4_listen,
            max_connections,
            max_queries_per_connection,
            bulk_lq_data_timeout
        );
        over!(shutdown_deadline, spin_before_park_us, log, dhcp4o6_listen);
        over!(udp_recv_buffer, log_format, tls, metrics_listen);
        for (to, from) in [
            (&mut self.tls_cert, &f.tls_cert),
            (&mut self.tls_key, &f.tls_key),
            (&mut self.tls_client_ca, &f.tls_client_ca),
        ] {
            if let Some(p) = from {
                *to = Some(p.clone());
            }
        }
        if let Some(p) = &f.data_dir {
            self.data_dir = Some(p.clone());
        }
        if f.no_authority {
            self.authority_enabled = false;
        }
        if let Some(p) = &f.import {
            self.import = Some(p.clone());
        }
        if let Some(p) = &f.feed {
            self.feed = Some(p.clone());
        }
        if !f.allow.is_empty() {
            self.allow = f.allow.clone();
        }
        self.active |= f.active;
        self.allow_insecure_active |= f.allow_insecure_active;
        if f.replica {
            self.cluster.get_or_insert_with(Default::default).role = crate::cluster::Role::Replica;
        }
    }

    /// Checks limits and combinations; every error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1".into());
        }
        if self.max_queries_per_connection == 0 || self.max_queries_per_connection > 64 {
            return bad("max_queries_per_connection must be 1..=64".into());
        }
        for (key, v) in [
            ("bulk_lq_data_timeout", self.bulk_lq_data_timeout),
            ("active_idle_timeout", self.active_idle_timeout),
            ("active_send_timeout", self.active_send_timeout),
        ] {
            if !(1..=MAX_DATA_TIMEOUT_SECS).contains(&v) {
                return bad(format!(
                    "{key} = {v}: must be 1..={MAX_DATA_TIMEOUT_SECS} seconds (one day)"
                ));
            }
        }
        if self.shutdown_deadline > MAX_SHUTDOWN_DEADLINE_SECS {
            return bad(format!(
                "shutdown_deadline = {}: must be 0..={MAX_SHUTDOWN_DEADLINE_SECS} seconds (one hour)",
                self.shutdown_deadline
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return bad(format!("log {:?}: not a tracing filter: {e}", self.log));
        }
        if !(MAX_FRAME..=16 * 1024 * 1024).contains(&self.chunk_size) {
            return bad(format!("chunk_size must be {MAX_FRAME}..=16777216 octets (a chunk must hold the largest framed message)"));
        }
        if self.credits_per_shard == 0 || self.credits_per_shard > 64 {
            return bad("credits_per_shard must be 1..=64".into());
        }
        if self.shards > 1024 {
            return bad("shards must be at most 1024".into());
        }
        if self.spin_before_park_us > 1_000_000 {
            return bad("spin_before_park_us must be at most 1000000".into());
        }
        if self.allow.is_empty() {
            return bad("allow is empty: no requestor could connect".into());
        }
        if let Some(d) = &self.server_duid {
            match hex_decode(d) {
                Some(b) if (2..=130).contains(&b.len()) => {}
                _ => return bad(format!("server_duid {d:?}: must be 2..130 octets of hex")),
            }
        }
        if self.active_backlog_bindings == 0 || self.active_backlog_bytes < MAX_FRAME {
            return bad(format!("active_backlog_bindings must be at least 1 and active_backlog_bytes at least {MAX_FRAME} (one message)"));
        }
        if !(1..=16_777_216).contains(&self.active_fanout_pending) {
            return bad("active_fanout_pending must be within 1..=16777216".into());
        }
        if self.history_entries > 100_000_000 || self.history_age > u64::from(u32::MAX) {
            return bad(
                "history_entries must be at most 100000000 and history_age at most 4294967295"
                    .into(),
            );
        }
        if self.allow_insecure_active && !self.active {
            return bad("allow_insecure_active is set but active is not: set both to serve active leasequery without TLS".into());
        }
        if self.tls != crate::session::TlsMode::Off {
            for (key, v) in [
                ("tls_cert", &self.tls_cert),
                ("tls_key", &self.tls_key),
                ("tls_client_ca", &self.tls_client_ca),
            ] {
                if v.is_none() {
                    return bad(format!(
                        "tls = {} needs tls_cert, tls_key and tls_client_ca: {key} is not set",
                        self.tls
                    ));
                }
            }
        }
        if !(1..=3600).contains(&self.tls_handshake_timeout) {
            return bad(format!(
                "tls_handshake_timeout = {}: must be 1..=3600 seconds",
                self.tls_handshake_timeout
            ));
        }
        if !(4096..=1 << 30).contains(&self.udp_recv_buffer) {
            return bad("udp_recv_buffer must be within 4096..=1073741824".into());
        }
        if self.journal_compact_bytes < 1024 * 1024 {
            return bad("journal_compact_bytes must be at least 1048576".into());
        }
        match self.server_id {
            Some(id) if id.is_unspecified() || id.is_broadcast() || id.is_multicast() => {
                return bad(format!("server_id {id}: must be a unicast IPv4 address"));
            }
            Some(_) => {}
            None if self.v4_server_id().is_none() => {
                return bad(format!(
                    "server_id is not set and lq4_listen {} is not one IPv4 address to take it \
                     from: set server_id (DHCPv4 option 54) to this server's address",
                    self.lq4_listen
                ));
            }
            None => {}
        }
        if let Some(m) = self.metrics_listen.0 {
            for (key, a) in [
                ("lq6_listen", self.lq6_listen),
                ("lq4_listen", self.lq4_listen),
            ] {
                if a == m {
                    return bad(format!(
                        "metrics_listen {m} is also {key}: give the metrics endpoint its own port (or \"off\")"
                    ));
                }
            }
        }
        if self.authority_enabled
            && self.authority.is_none()
            && !self.dhcp4o6_listen.ip().to_canonical().is_loopback()
        {
            return bad(format!(
                "dhcp4o6_listen {} is not a loopback address and there is no [authority] table: \
                 the embedded demo pools are served on loopback only; configure [authority] or \
                 set authority_enabled = false (--no-authority)",
                self.dhcp4o6_listen
            ));
        }
        if self.authority_enabled {
            self.authority_config()
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("authority: {e}")))?;
        }
        if let Some(c) = &self.cluster {
            c.validate(self.data_dir.is_some())
                .map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    /// What `--check-config` adds to [`Config::validate`]: the files the start would read are
    /// readable (`import`, `feed` when it exists already, `data_dir` and its `server-duid` when
    /// they exist). Reads only; creates nothing. `Ok` holds warnings: what the start would
    /// accept and log (a `feed` path that is not a readable file).
    pub fn check_files(&self) -> Result<Vec<String>, ConfigError> {
        let read = |key: &str, path: &Path| {
            std::fs::File::open(path)
                .and_then(|f| {
                    if f.metadata()?.is_dir() {
                        Err(std::io::Error::other("is a directory, not a file"))
                    } else {
                        Ok(())
                    }
                })
                .map_err(|e| ConfigError::Invalid(format!("{key} {}: {e}", path.display())))
        };
        if let Some(p) = &self.import {
            read("import", p)?;
        }
        if self.tls != crate::session::TlsMode::Off {
            // The start loads them the same way (certificate, key, their match, the CA).
            crate::tls::Material::load(self).map_err(ConfigError::Invalid)?;
        }
        if let Some(c) = &self.cluster {
            c.check_files().map_err(ConfigError::Invalid)?;
        }
        // A feed file may appear after the start (it is followed as it grows), and one that
        // cannot be read is logged by the running server, not refused: a warning here too.
        let mut warnings = Vec::new();
        if let Some(p) = self.feed.as_ref().filter(|p| p.exists()) {
            if let Err(e) = read("feed", p) {
                warnings.push(format!(
                    "{e}: the server starts and logs it until it is a file"
                ));
            }
        }
        if let Some(d) = &self.data_dir {
            match std::fs::metadata(d) {
                Ok(m) if !m.is_dir() => {
                    return Err(ConfigError::Invalid(format!(
                        "data_dir {}: not a directory",
                        d.display()
                    )));
                }
                Ok(_) => {
                    std::fs::read_dir(d).map_err(|e| {
                        ConfigError::Invalid(format!("data_dir {}: {e}", d.display()))
                    })?;
                    // store::SERVER_DUID_FILE (not named here: the configuration does not depend on store).
                    let duid = d.join("server-duid");
                    if duid.exists() {
                        read("data_dir", &duid)?;
                    }
                }
                // Created at start.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ConfigError::Invalid(format!(
                        "data_dir {}: {e}",
                        d.display()
                    )));
                }
            }
        }
        Ok(warnings)
    }

    /// The effective configuration as TOML, defaults included (`--check-config`): the
    /// authority table in effect (the embedded demo when none is configured) and the DHCPv4
    /// server identifier in effect. Loading the text gives the same server.
    pub fn effective_toml(&self) -> Result<String, String> {
        let mut c = self.clone();
        if c.authority_enabled && c.authority.is_none() {
            c.authority = Some(c.authority_config());
        }
        c.server_id = c.v4_server_id();
        let body = toml::to_string(&c).map_err(|e| e.to_string())?;
        Ok(format!(
            "# leasequeryd effective configuration ({} shards in effect)\n{body}",
            c.shard_count()
        ))
    }

    /// The authority settings in effect: the `[authority]` table, or the embedded demo setup.
    pub fn authority_config(&self) -> crate::authority::AuthorityConfig {
        self.authority
            .clone()
            .unwrap_or_else(crate::authority::AuthorityConfig::demo)
    }

    /// The DHCPv4 server identifier (option 54) in effect: `server_id`, else the address of
    /// `lq4_listen` when that is one IPv4 address (IPv4-mapped included, `0.0.0.0` not);
    /// `None` only for a configuration [`Config::validate`] refuses.
    pub fn v4_server_id(&self) -> Option<std::net::Ipv4Addr> {
        self.server_id
            .or_else(|| match self.lq4_listen.ip().to_canonical() {
                IpAddr::V4(a) if !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast() => {
                    Some(a)
                }
                _ => None,
            })
    }

    /// Start-up warnings about the host's limits, given the soft open-file limit
    /// (RLIMIT_NOFILE, see [`open_file_limit`]): `max_connections` beyond what that limit
    /// leaves after the server's own descriptors.
    pub fn limit_warnings(&self, open_files: Option<u64>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(limit) = open_files {
            let own = FDS_BASE + FDS_PER_SHARD * self.shard_count() as u64;
            let need = (self.max_connections as u64).saturating_add(own);
            if need > limit {
                out.push(format!(
                    "max_connections = {} needs about {need} open files ({own} for the server \
                     itself) but the open-file limit (RLIMIT_NOFILE) is {limit}: connections \
                     past about {} cannot be accepted; raise the limit (systemd LimitNOFILE=, \
                     ulimit -n) or lower max_connections",
                    self.max_connections,
                    limit.saturating_sub(own)
                ));
            }
        }
        out
    }

    /// The shard count in effect (0 resolves to the number of online CPUs).
    pub fn shard_count(&self) -> usize {
        if self.shards == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            self.shards
        }
    }

    /// The idle / blocked-send timeout (capped at [`MAX_DATA_TIMEOUT_SECS`], as validation
    /// does: the connection's timers add it to `Instant::now()`).
    pub fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.bulk_lq_data_timeout.min(MAX_DATA_TIMEOUT_SECS))
    }

    /// True when `ip` may connect.
    pub fn allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }
}

/// This process's soft open-file limit (RLIMIT_NOFILE) from `/proc/self/limits`; `None` when
/// it is unlimited or cannot be read.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&text)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.strip_prefix("Max open files")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Decodes an even-length hex string (colons allowed between octets).
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|&c| c != ':').collect();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests;
