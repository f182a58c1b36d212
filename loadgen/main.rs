//! `loadgen`: the load generator bundled with leasequeryd. Each scenario runs bounded (by count
//! and duration), records HdrHistograms per thread, merges them, prints a perfdhcp-style
//! summary and writes the report files (see `report.rs`) under `--out`.
//!
//! Scenarios: `churn` (N lwB4 clients doing DHCP4o6 DORA, renewals and releases, with
//! `--verify` against a bulk leasequery), `bulk` (K bulk requestors of every query kind),
//! `active` (S active-leasequery subscribers following a churn: change-to-subscriber latency,
//! `--verify` of every subscriber's table), `mixed` (churn, bulk requestors and subscribers at
//! once) and `ceiling` (the loopback limit for bulk streaming).

mod active;
mod bulk;
mod ceiling;
mod churn;
mod ledger;
mod metric;
mod plot;
mod report;
mod requestor;
mod verify;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use requestor::{QueryKind, TlsArgs};

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Load generator for leasequeryd", version)]
struct Cli {
    /// Directory for the report files (summary.txt, summary.json, *.hgrm, *.hlog, *.svg).
    #[arg(long, default_value = "loadgen-out", global = true)]
    out: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// K requestors run bulk queries in parallel and measure time to first binding, stream
    /// duration, bindings/s and bytes/s.
    Bulk {
        /// The server's DHCPv6 / DHCP4o6 leasequery TCP address (the same flag in every
        /// scenario).
        // `--server6`, the flag's first spelling, stays as a hidden alias for old scripts.
        #[arg(long = "server6-lq", alias = "server6", default_value = "[::1]:547")]
        server6_lq: SocketAddr,
        /// The server's DHCPv4 leasequery TCP address.
        #[arg(long = "server4-lq", alias = "server4", default_value = "127.0.0.1:67")]
        server4_lq: SocketAddr,
        /// Parallel requestors (threads, pinned round-robin to cores).
        #[arg(long, default_value_t = 2)]
        requestors: usize,
        /// Queries per requestor.
        #[arg(long, default_value_t = 10)]
        queries: u64,
        /// Stop starting queries after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Open loop: queries per second per requestor (default: closed loop).
        #[arg(long)]
        rate: Option<f64>,
        /// Query kinds, used in turn (repeatable): v6-link:ADDR, v6-relay:HEX, v6-client:HEX,
        /// v4-all, v4-relay:HEX, 4o6-link:ADDR, 4o6-relay:HEX. Default: the demo lease set's
        /// v4-all, 4o6-link:2001:db8:1:: and v6-relay:000300010a0000000010.
        #[arg(long = "query")]
        queries_kinds: Vec<QueryKind>,
        /// Every stream must return exactly this many bindings (else counted as an error and
        /// the exit code is 1).
        #[arg(long)]
        expect: Option<u64>,
        /// Connect and read timeout, seconds.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
        /// Also run the loopback ceiling with the same total octets and report the ratio.
        #[arg(long)]
        ceiling: bool,
        /// The write size for --ceiling (the server's chunk_size).
        #[arg(long, default_value_t = 262_144)]
        write_size: usize,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// N simulated lwB4 clients (DHCPv4-over-DHCPv6, RFC 7341) do DORA, renewals (some with a
    /// new softwire source) and releases over UDP; `--verify` then checks the server's bulk
    /// leasequery answer against what the clients hold.
    #[command(after_help = SUBNET_HELP)]
    Churn {
        #[command(flatten)]
        churn: ChurnOpts,
        /// After the churn, bulk-query the server and compare with the ledger.
        #[arg(long)]
        verify: bool,
        /// The server's DHCPv6/DHCP4o6 leasequery TCP address, for --verify.
        #[arg(long = "server6-lq", default_value = "[::1]:547")]
        server6_lq: SocketAddr,
        /// After the churn, write the ledger (what each client holds after its last ACK) to
        /// FILE as JSON lines: `{"client_id":HEX,"ipv4":A,"psid":{"offset","len","id"},
        /// "softwire_src":ADDR}` (`psid` only for a shared address), sorted by client-id.
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// S active-leasequery subscribers (v4, v6, DHCP4o6) bulk-load, then follow the server
    /// while a churn (the `churn` options) changes bindings; measures the change-to-subscriber
    /// latency; `--verify` checks every subscriber's table against what the clients hold.
    /// The server needs `--active`, TLS (`--tls required` and --tls-cert, --tls-key, --tls-ca
    /// here) or `--allow-insecure-active`, and `--max-connections` above S.
    #[command(after_help = SUBNET_HELP)]
    Active {
        #[command(flatten)]
        churn: ChurnOpts,
        #[command(flatten)]
        subs: SubOpts,
        /// After the churn, every v4 and 4o6 subscriber's table must equal the clients'
        /// ledger.
        #[arg(long)]
        verify: bool,
    },
    /// Everything at once: the churn, K bulk requestors and S active subscribers; `--verify`
    /// checks the server's bulk answer and every subscriber's table against the ledger.
    #[command(after_help = SUBNET_HELP)]
    Mixed {
        #[command(flatten)]
        churn: ChurnOpts,
        #[command(flatten)]
        subs: SubOpts,
        /// Bulk requestors running while the churn runs.
        #[arg(long, default_value_t = 2)]
        requestors: usize,
        /// Bulk queries per requestor.
        #[arg(long = "bulk-queries", default_value_t = 5)]
        bulk_queries: u64,
        /// Bulk query kinds, used in turn (as `bulk --query`). Default: v4-all and the churn
        /// clients' 4o6 link.
        #[arg(long = "query")]
        queries_kinds: Vec<QueryKind>,
        /// After the churn, a bulk query and every subscriber's table must equal the ledger.
        #[arg(long)]
        verify: bool,
    },
    /// Prints the percentile distribution (.hgrm format) of an interval log written by loadgen
    /// (all its intervals summed).
    Percentiles {
        /// The .hlog file.
        file: PathBuf,
    },
    /// Streams pre-filled buffers over loopback TCP: the physical limit for bulk streaming.
    Ceiling {
        /// Octets to stream.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        /// Octets per write (the server's chunk_size).
        #[arg(long, default_value_t = 262_144)]
        write_size: usize,
        /// Runs; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

/// How the server places the churn clients, shown under `--help` of `churn`, `active`, `mixed`.
const SUBNET_HELP: &str = "\
How the server picks the subnet (its [[subnet]] tables; README \"DHCP4o6 lease authority\"):
  each client's DHCPV4-QUERY is placed by one IPv6 address, the selector:
  - with --relay or --link ADDR: the relay's link-address, ADDR (default 2001:db8:1::);
  - direct (no relay): the IPv6 source address of loadgen's socket, which the kernel picks
    towards --server (::1 for a server on [::1]).
  The subnets whose `links` prefixes contain the selector (the longest prefix wins) are the
  candidates: the --shared-ratio share of clients lists option 159 and gets the first shared
  subnet (psid_len), the others the first full-address subnet. A subnet never lends addresses
  to another, so a pool that runs out shows as clients without an OFFER.
The embedded default setup (no [[subnet]] in the config) serves ::1/128 and 2001:db8::/32 with
about 250 full addresses and 3,800 shared port sets: the defaults (1000 clients, --shared-ratio
0.9) fit it.";

/// The lwB4 clients of `churn`, `active` and `mixed`.
#[derive(clap::Args, Debug, Clone)]
struct ChurnOpts {
    /// The server's DHCP4o6 UDP address.
    #[arg(long, default_value = "[::1]:547")]
    server: SocketAddr,
    /// Simulated clients.
    #[arg(long, default_value_t = 1000)]
    clients: u32,
    /// Index of the first client (client-ids, MACs and softwire sources derive from it).
    #[arg(long, default_value_t = 0)]
    first_client: u32,
    /// Share of clients that list option 159 (shared addresses with a PSID), 0..1; the others
    /// ask for a full address (the default setup has about 250 of those).
    #[arg(long, default_value_t = 0.9)]
    shared_ratio: f64,
    /// Send through one simulated relay (Relay-Forward with link-address --link,
    /// interface-id, relay-id, remote-id).
    #[arg(long)]
    relay: bool,
    /// The simulated relay's link-address, which selects the server's subnet (implies
    /// --relay; default 2001:db8:1::).
    #[arg(long, value_name = "ADDR")]
    link: Option<std::net::Ipv6Addr>,
    /// Open loop: exchanges per second in total (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Closed loop: exchanges outstanding in total.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Renewal rounds after DORA.
    #[arg(long, default_value_t = 1)]
    renewals: u32,
    /// Share of clients whose softwire source changes at each renewal, 0..1.
    #[arg(long, default_value_t = 0.1)]
    swchange_ratio: f64,
    /// Share of clients that release at the end, 0..1.
    #[arg(long, default_value_t = 0.1)]
    release_ratio: f64,
    /// Seconds to wait for an answer before retransmitting.
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,
    /// Retransmissions before an exchange is given up (counted as a drop).
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Threads (0: one per core, pinned).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The /48 of the softwire sources (option 109).
    #[arg(long, default_value = "2001:db8:ff::")]
    softwire_prefix: std::net::Ipv6Addr,
    /// Start no exchange after this many seconds (the ones under way finish; the phases
    /// not reached are skipped). Default: no bound but the count.
    #[arg(long)]
    duration: Option<f64>,
}

/// The active subscribers of `active` and `mixed`.
#[derive(clap::Args, Debug, Clone)]
struct SubOpts {
    /// The server's DHCPv6/DHCP4o6 leasequery TCP address.
    #[arg(long = "server6-lq", default_value = "[::1]:547")]
    server6_lq: SocketAddr,
    /// The server's DHCPv4 leasequery TCP address.
    #[arg(long = "server4-lq", default_value = "127.0.0.1:67")]
    server4_lq: SocketAddr,
    /// Active subscribers.
    #[arg(long, default_value_t = 3)]
    subscribers: usize,
    /// Subscriber forms, used in turn (repeatable): 4o6, v4, v6. Default: 4o6, v4, v6.
    #[arg(long = "form")]
    forms: Vec<active::Form>,
    /// Seconds to wait after the churn for every subscriber to reach the clients' state.
    #[arg(long, default_value_t = 10.0)]
    settle: f64,
    /// Subscriber threads (0: one per core, pinned).
    #[arg(long = "subscriber-threads", default_value_t = 0)]
    subscriber_threads: usize,
    #[command(flatten)]
    tls: TlsArgs,
    /// A second server's DHCPv6/DHCP4o6 leasequery TCP address (e.g. a cluster replica of the
    /// churned authority): as many subscribers again there, timed on the same clock; their
    /// figures are reported with the prefix `also_` (`also_active_update`, ...), and their
    /// tables are verified too.
    #[arg(long = "also-server6-lq")]
    also_server6_lq: Option<SocketAddr>,
}

fn progress_bar(total: u64, counter: Arc<AtomicU64>) -> Option<std::thread::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(std::thread::spawn(move || {
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        loop {
            let n = counter.load(Ordering::Relaxed);
            pb.set_position(n.min(total));
            if n >= total || counter.load(Ordering::Relaxed) == u64::MAX {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        pb.finish_and_clear();
    }))
}

impl ChurnOpts {
    /// The checked churn parameters; exit code 2 (with the reason printed) when out of range.
    fn args(&self) -> Result<churn::ChurnArgs, ExitCode> {
        let ratio_ok = |r: f64| (0.0..=1.0).contains(&r);
        if self.clients == 0
            || self.concurrency == 0
            || !ratio_ok(self.shared_ratio)
            || !ratio_ok(self.swchange_ratio)
            || !ratio_ok(self.release_ratio)
            || self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite()))
            || !(self.timeout > 0.0 && self.timeout.is_finite())
            || self.duration.is_some_and(|d| !(d > 0.0 && d.is_finite()))
        {
            eprintln!(
                "loadgen: --clients, --concurrency, --rate, --timeout and --duration must be \
                 positive and the ratios within 0..1"
            );
            return Err(ExitCode::from(2));
        }
        Ok(churn::ChurnArgs {
            server: self.server,
            clients: self.clients,
            first: self.first_client,
            shared_ratio: self.shared_ratio,
            relay: self.relay || self.link.is_some(),
            link: self.link.unwrap_or(churn::RELAY_LINK),
            rate: self.rate,
            concurrency: self.concurrency,
            renewals: self.renewals,
            swchange_ratio: self.swchange_ratio,
            release_ratio: self.release_ratio,
            timeout: Duration::from_secs_f64(self.timeout),
            retries: self.retries,
            threads: self.threads,
            softwire_prefix: self.softwire_prefix,
            duration: self.duration.map(Duration::from_secs_f64),
        })
    }
}

/// Runs the churn with a progress bar.
fn run_churn(
    args: &churn::ChurnArgs,
    stamps: Option<Arc<ledger::Stamps>>,
) -> std::io::Result<(report::RunReport, Vec<ledger::Entry>)> {
    let progress = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(churn::steps(args), progress.clone());
    let res = churn::run(args, progress.clone(), stamps);
    progress.store(u64::MAX, Ordering::Relaxed);
    if let Some(b) = bar {
        let _ = b.join();
    }
    res
}

/// The links the churn clients' bindings are recorded under: the relay's link, or the IPv6
/// source the kernel picks towards the server for direct clients.
fn churn_links(args: &churn::ChurnArgs) -> std::io::Result<Vec<std::net::Ipv6Addr>> {
    if args.relay {
        Ok(vec![args.link])
    } else {
        churn::direct_source(args.server).map(|a| vec![a])
    }
}

/// Why a verification against an empty ledger proves nothing: the clients hold no lease because
/// their exchanges were lost (timeouts, unanswered messages), not because they released. `None`
/// when the ledger has leases or the run lost nothing.
fn empty_ledger_reason(r: &report::RunReport, ledger: &[ledger::Entry]) -> Option<String> {
    let get = |k: &str| r.counters.get(k).copied().unwrap_or(0);
    let (timeouts, sent, received) = (get("timeouts"), get("sent"), get("received"));
    if !ledger.is_empty() || (timeouts == 0 && received >= sent) {
        return None;
    }
    Some(format!(
        "nothing verified: the ledger is empty because the clients' exchanges were lost \
         ({timeouts} timeouts, {} of {sent} messages unanswered), so no client holds a lease to \
         compare with the server",
        sent.saturating_sub(received)
    ))
}

/// `--verify` through bulk leasequery: the server's 4o6 bindings on the clients' links (left
/// out: those whose client-id is not a loadgen client's, e.g. an import file's) must equal the
/// ledger; differences are printed and counted (`error_verify_differences`).
fn verify_bulk(
    r: &mut report::RunReport,
    ledger: &[ledger::Entry],
    args: &churn::ChurnArgs,
    server6_lq: SocketAddr,
    tls: Option<&requestor::Tls>,
) {
    let found = churn_links(args)
        .and_then(|links| verify::query_links(server6_lq, &links, Duration::from_secs(30), tls));
    match found {
        Ok(mut found) => {
            // Bindings of non-loadgen clients (an import file) are not compared; another
            // run's clients' are (they show as extra).
            found.retain(|f| {
                f.client_id
                    .as_deref()
                    .is_none_or(|c| ledger::loadgen_client(c).is_some())
            });
            let diffs = verify::compare(ledger, &found);
            r.counters
                .insert("verify_ledger".into(), ledger.len() as u64);
            r.counters.insert(
                "verify_server_active".into(),
                found.iter().filter(|f| f.active).count() as u64,
            );
            r.counters
                .insert("error_verify_differences".into(), diffs.len() as u64);
            for d in diffs.iter().take(1000) {
                eprintln!("verify: {d}");
            }
            if let Some(reason) = empty_ledger_reason(r, ledger) {
                eprintln!("verify: FAILED, {reason}");
                r.counters.insert("error_verify_empty_ledger".into(), 1);
            } else if diffs.is_empty() {
                println!(
                    "verify: OK, the server's {} active 4o6 bindings equal the ledger",
                    ledger.len()
                );
            } else {
                eprintln!("verify: FAILED, {} differences", diffs.len());
            }
        }
        Err(e) => {
            eprintln!("loadgen: verify: bulk query failed: {e}");
            r.counters.insert("error_verify_query".into(), 1);
        }
    }
}

/// `active` and `mixed`: subscribers connect, bulk-load and catch up; then the churn runs
/// (with the bulk requestors alongside for `mixed`); then the subscribers settle and are
/// compared with the ledger.
fn run_active(
    args: &churn::ChurnArgs,
    subs: &SubOpts,
    bulk: Option<bulk::BulkArgs>,
    verify: bool,
) -> Result<report::RunReport, ExitCode> {
    if subs.subscribers == 0 || !(subs.settle >= 0.0 && subs.settle.is_finite()) {
        eprintln!("loadgen: --subscribers must be at least 1 and --settle a number of seconds");
        return Err(ExitCode::from(2));
    }
    let links = churn_links(args).map_err(|e| {
        eprintln!("loadgen: {e}");
        ExitCode::from(1)
    })?;
    let tls = subs.tls.tls().map_err(|e| {
        eprintln!("loadgen: {e}");
        ExitCode::from(2)
    })?;
    let forms = if subs.forms.is_empty() {
        vec![active::Form::O6, active::Form::V4, active::Form::V6]
    } else {
        subs.forms.clone()
    };
    let sub_args = active::SubArgs {
        server6: subs.server6_lq,
        server4: subs.server4_lq,
        subscribers: subs.subscribers,
        forms,
        links,
        timeout: args.timeout.max(Duration::from_secs(10)),
        threads: subs.subscriber_threads,
        tls: tls.clone(),
    };
    let t0 = std::time::Instant::now();
    let stamps = Arc::new(ledger::Stamps::new(t0, args.first, args.clients));
    let running = active::Running::start(&sub_args, stamps.clone(), t0).map_err(|e| {
        eprintln!("loadgen: subscribers: {e}");
        ExitCode::from(1)
    })?;
    let also = match subs.also_server6_lq {
        Some(a) => Some(
            active::Running::start(
                &active::SubArgs {
                    server6: a,
                    ..sub_args.clone()
                },
                stamps.clone(),
                t0,
            )
            .map_err(|e| {
                eprintln!("loadgen: subscribers on {a}: {e}");
                ExitCode::from(1)
            })?,
        ),
        None => None,
    };
    let set_up = t0.elapsed();
    let bulk_thread =
        bulk.map(|b| std::thread::spawn(move || bulk::run(&b, Arc::new(AtomicU64::new(0)))));
    let churned = run_churn(args, Some(stamps));
    let bulk_report = bulk_thread.map(|h| h.join());
    let (mut r, ledger) = match churned {
        Ok(x) => x,
        Err(e) => {
            eprintln!("loadgen: churn: {e}");
            return Err(ExitCode::from(1));
        }
    };
    r.scenario = if bulk_report.is_some() {
        "mixed"
    } else {
        "active"
    }
    .into();
    let (mut outcomes, waited) =
        running.finish(ledger.clone(), Duration::from_secs_f64(subs.settle));
    if let Some(also) = also {
        let (more, _) = also.finish(ledger.clone(), Duration::from_secs_f64(subs.settle));
        for mut o in more {
            o.counters = o
                .counters
                .into_iter()
                .map(|(k, v)| (format!("also_{k}"), v))
                .collect();
            for m in &mut o.metrics {
                m.name = match m.name {
                    "active_update" => "also_active_update",
                    "active_from_send" => "also_active_from_send",
                    n => n,
                };
            }
            outcomes.push(o);
        }
    }
    r.rates
        .insert("subscriber_set_up_s".into(), set_up.as_secs_f64());
    r.rates.insert("settle_s".into(), waited.as_secs_f64());
    r.counters
        .insert("active_subscribers".into(), subs.subscribers as u64);
    let mut tables = Vec::new();
    for o in &outcomes {
        r.absorb(&o.counters, &o.metrics);
        tables.extend(o.tables.iter().cloned());
    }
    let updates: u64 = r
        .counters
        .iter()
        .filter(|(k, _)| k.starts_with("active_updates_"))
        .map(|(_, v)| v)
        .sum();
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    r.rates
        .insert("active_updates/s".into(), updates as f64 / secs);
    match bulk_report {
        Some(Ok(b)) => {
            for (k, v) in &b.counters {
                r.counters.insert(format!("bulk_{k}"), *v);
            }
            for (k, v) in &b.rates {
                r.rates.insert(format!("bulk_{k}"), *v);
            }
            r.metrics.extend(b.metrics);
        }
        Some(Err(_)) => {
            r.counters.insert("error_bulk_thread_panicked".into(), 1);
        }
        None => {}
    }
    if verify {
        let mut bad = 0u64;
        for (n, (form, table)) in tables.iter().enumerate() {
            let diffs = verify::compare(&ledger, table);
            if !diffs.is_empty() {
                bad += 1;
                eprintln!(
                    "verify: subscriber {n} ({form:?}): FAILED, {} differences",
                    diffs.len()
                );
                for d in diffs.iter().take(100) {
                    eprintln!("verify: subscriber {n}: {d}");
                }
            }
        }
        r.counters
            .insert("verify_subscribers".into(), tables.len() as u64);
        r.counters
            .insert("error_verify_subscribers_differing".into(), bad);
        if let Some(reason) = empty_ledger_reason(&r, &ledger) {
            eprintln!("verify: subscribers: FAILED, {reason}");
            r.counters.insert("error_verify_empty_ledger".into(), 1);
        } else if bad == 0 {
            println!(
                "verify: OK, all {} following subscribers' tables equal the ledger of {} leases",
                tables.len(),
                ledger.len()
            );
        }
        if r.scenario == "mixed" {
            verify_bulk(&mut r, &ledger, args, subs.server6_lq, tls.as_ref());
        }
    }
    Ok(r)
}

fn main() -> ExitCode {
    // `loadgen --man-page DIR`: the man pages (loadgen.1 and one per subcommand) generated from
    // the clap definitions into DIR (dist/man/; tests/packaging.rs keeps them equal). Not a
    // clap flag, so that it stays out of the pages themselves.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "--man-page")
    {
        use clap::CommandFactory;
        let Some(dir) = std::env::args_os().nth(2) else {
            eprintln!("loadgen: --man-page needs a directory");
            return ExitCode::from(2);
        };
        return match clap_mangen::generate_to(Cli::command(), &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: cannot write the man pages: {e}");
                ExitCode::from(1)
            }
        };
    }
    let cli = Cli::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let server = match &cli.cmd {
        Cmd::Bulk {
            server6_lq,
            server4_lq,
            ..
        } => format!("leasequery {server6_lq}, {server4_lq}"),
        Cmd::Churn {
            churn, server6_lq, ..
        } => format!("DHCP4o6 {}, leasequery {server6_lq}", churn.server),
        Cmd::Active { churn, subs, .. } | Cmd::Mixed { churn, subs, .. } => format!(
            "DHCP4o6 {}, leasequery {}, {}",
            churn.server, subs.server6_lq, subs.server4_lq
        ),
        Cmd::Ceiling { .. } | Cmd::Percentiles { .. } => "loopback".to_string(),
    };
    let report = match cli.cmd {
        Cmd::Percentiles { file } => {
            let h = std::fs::read(&file).and_then(|b| report::read_hlog(&b));
            return match h {
                Ok(h) => {
                    print!("{}", report::hgrm(&h, 1.0));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("loadgen: {}: {e}", file.display());
                    ExitCode::from(1)
                }
            };
        }
        Cmd::Churn {
            churn: o,
            verify,
            server6_lq,
            ledger: ledger_file,
            tls,
        } => {
            let args = match o.args() {
                Ok(a) => a,
                Err(code) => return code,
            };
            let tls = match tls.tls() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    return ExitCode::from(2);
                }
            };
            let (mut r, ledger) = match run_churn(&args, None) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("loadgen: churn: {e}");
                    return ExitCode::from(1);
                }
            };
            if let Some(f) = &ledger_file {
                if let Err(e) = ledger::write_jsonl(f, &ledger) {
                    eprintln!("loadgen: --ledger {}: {e}", f.display());
                    return ExitCode::from(1);
                }
            }
            if verify {
                verify_bulk(&mut r, &ledger, &args, server6_lq, tls.as_ref());
            }
            r
        }
        Cmd::Active {
            churn: o,
            subs,
            verify,
        } => {
            let args = match o.args() {
                Ok(a) => a,
                Err(code) => return code,
            };
            match run_active(&args, &subs, None, verify) {
                Ok(r) => r,
                Err(code) => return code,
            }
        }
        Cmd::Mixed {
            churn: o,
            subs,
            requestors,
            bulk_queries,
            queries_kinds,
            verify,
        } => {
            let args = match o.args() {
                Ok(a) => a,
                Err(code) => return code,
            };
            if requestors == 0 || bulk_queries == 0 {
                eprintln!("loadgen: --requestors and --bulk-queries must be at least 1");
                return ExitCode::from(2);
            }
            let kinds = if queries_kinds.is_empty() {
                let links = match churn_links(&args) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("loadgen: {e}");
                        return ExitCode::from(1);
                    }
                };
                let mut k = vec![QueryKind::V4All];
                k.extend(links.into_iter().map(QueryKind::O6Link));
                k
            } else {
                queries_kinds
            };
            let bulk = bulk::BulkArgs {
                server6: subs.server6_lq,
                server4: subs.server4_lq,
                requestors,
                queries: bulk_queries,
                duration: None,
                rate: None,
                kinds,
                expect: None,
                timeout: args.timeout.max(Duration::from_secs(30)),
                tls: match subs.tls.tls() {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("loadgen: {e}");
                        return ExitCode::from(2);
                    }
                },
            };
            match run_active(&args, &subs, Some(bulk), verify) {
                Ok(r) => r,
                Err(code) => return code,
            }
        }
        Cmd::Bulk {
            server6_lq,
            server4_lq,
            requestors,
            queries,
            duration,
            rate,
            queries_kinds,
            expect,
            timeout,
            ceiling,
            write_size,
            tls,
        } => {
            if requestors == 0 || queries == 0 {
                eprintln!("loadgen: --requestors and --queries must be at least 1");
                return ExitCode::from(2);
            }
            if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                eprintln!("loadgen: --rate must be a positive number of queries per second");
                return ExitCode::from(2);
            }
            let kinds = if queries_kinds.is_empty() {
                [
                    "v4-all",
                    "4o6-link:2001:db8:1::",
                    "v6-relay:000300010a0000000010",
                ]
                .iter()
                .map(|k| k.parse().expect("valid default"))
                .collect()
            } else {
                queries_kinds
            };
            let args = bulk::BulkArgs {
                server6: server6_lq,
                server4: server4_lq,
                requestors,
                queries,
                duration: duration.map(Duration::from_secs_f64),
                rate,
                kinds,
                expect,
                timeout: Duration::from_secs_f64(timeout.max(0.001)),
                tls: match tls.tls() {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("loadgen: {e}");
                        return ExitCode::from(2);
                    }
                },
            };
            let progress = Arc::new(AtomicU64::new(0));
            let bar = progress_bar(queries * requestors as u64, progress.clone());
            let mut r = bulk::run(&args, progress.clone());
            progress.store(u64::MAX, Ordering::Relaxed);
            if let Some(b) = bar {
                let _ = b.join();
            }
            if ceiling {
                let bytes = r.counters.get("bytes").copied().unwrap_or(0).max(1);
                match ceiling::stream(bytes, write_size) {
                    Ok(d) => {
                        let c = bytes as f64 / d.as_secs_f64();
                        r.rates.insert("ceiling_bytes/s".into(), c);
                        let ours = r.rates.get("bytes/s").copied().unwrap_or(0.0);
                        r.rates.insert("ratio_to_ceiling".into(), ours / c);
                    }
                    Err(e) => eprintln!("loadgen: ceiling run failed: {e}"),
                }
            }
            r
        }
        Cmd::Ceiling {
            bytes,
            write_size,
            runs,
        } => {
            let mut rates = Vec::new();
            let t0 = std::time::Instant::now();
            for _ in 0..runs.max(1) {
                match ceiling::stream(bytes, write_size) {
                    Ok(d) => rates.push(bytes as f64 / d.as_secs_f64()),
                    Err(e) => {
                        eprintln!("loadgen: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            rates.sort_by(f64::total_cmp);
            let mut r = report::RunReport {
                scenario: "ceiling".into(),
                elapsed: t0.elapsed(),
                ..Default::default()
            };
            r.counters.insert("runs".into(), rates.len() as u64);
            r.counters.insert("bytes_per_run".into(), bytes);
            r.counters.insert("write_size".into(), write_size as u64);
            r.rates
                .insert("median_bytes/s".into(), rates[rates.len() / 2]);
            r.rates.insert("min_bytes/s".into(), rates[0]);
            r.rates.insert("max_bytes/s".into(), rates[rates.len() - 1]);
            r
        }
    };
    let mut report = report;
    report.command = command;
    report.server = server;
    print!("{}", report.summary());
    if let Err(e) = report.write(&cli.out) {
        eprintln!(
            "loadgen: cannot write the report to {}: {e}",
            cli.out.display()
        );
        return ExitCode::from(1);
    }
    println!("report files in {}", cli.out.display());
    let errors: u64 = report
        .counters
        .iter()
        .filter(|(k, _)| k.starts_with("error_") || k.as_str() == "timeouts")
        .map(|(_, v)| v)
        .sum();
    if errors > 0 {
        eprintln!("loadgen: {errors} errors or timeouts (see the summary)");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
