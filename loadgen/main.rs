//! `loadgen`: the load generator bundled with leasequeryd. Each scenario runs bounded (by count
//! and duration), records HdrHistograms per thread, merges them, prints a perfdhcp-style
//! summary and writes the report files (see `report.rs`) under `--out`.
//!
//! Scenarios available now: `churn` (N lwB4 clients doing DHCP4o6 DORA, renewals and releases,
//! with `--verify` against a bulk leasequery), `bulk` (K bulk requestors of every query kind)
//! and `ceiling` (the loopback limit for bulk streaming). The active-subscriber and mixed
//! scenarios come with active leasequery.

mod bulk;
mod ceiling;
mod churn;
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

use requestor::QueryKind;

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
        /// The server's DHCPv6 / DHCP4o6 leasequery address.
        #[arg(long, default_value = "[::1]:547")]
        server6: SocketAddr,
        /// The server's DHCPv4 leasequery address.
        #[arg(long, default_value = "127.0.0.1:67")]
        server4: SocketAddr,
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
    },
    /// N simulated lwB4 clients (DHCPv4-over-DHCPv6, RFC 7341) do DORA, renewals (some with a
    /// new softwire source) and releases over UDP; `--verify` then checks the server's bulk
    /// leasequery answer against what the clients hold.
    Churn {
        /// The server's DHCP4o6 UDP address.
        #[arg(long, default_value = "[::1]:547")]
        server: SocketAddr,
        /// Simulated clients.
        #[arg(long, default_value_t = 1000)]
        clients: u32,
        /// Index of the first client (client-ids, MACs and softwire sources derive from it).
        #[arg(long, default_value_t = 0)]
        first_client: u32,
        /// Share of clients that list option 159 (shared addresses with a PSID), 0..1.
        #[arg(long, default_value_t = 0.5)]
        shared_ratio: f64,
        /// Send through one simulated relay (Relay-Forward, link 2001:db8:1::, interface-id,
        /// relay-id, remote-id).
        #[arg(long)]
        relay: bool,
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
        /// After the churn, bulk-query the server and compare with the ledger.
        #[arg(long)]
        verify: bool,
        /// The server's DHCPv6/DHCP4o6 leasequery TCP address, for --verify.
        #[arg(long = "server6-lq", default_value = "[::1]:547")]
        server6_lq: SocketAddr,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
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
            server,
            clients,
            first_client,
            shared_ratio,
            relay,
            rate,
            concurrency,
            renewals,
            swchange_ratio,
            release_ratio,
            timeout,
            retries,
            threads,
            softwire_prefix,
            verify,
            server6_lq,
        } => {
            let ratio_ok = |r: f64| (0.0..=1.0).contains(&r);
            if clients == 0
                || concurrency == 0
                || !ratio_ok(shared_ratio)
                || !ratio_ok(swchange_ratio)
                || !ratio_ok(release_ratio)
                || rate.is_some_and(|r| !(r > 0.0 && r.is_finite()))
                || !(timeout > 0.0 && timeout.is_finite())
            {
                eprintln!(
                    "loadgen: --clients, --concurrency, --rate and --timeout must be positive and \
                     the ratios within 0..1"
                );
                return ExitCode::from(2);
            }
            let args = churn::ChurnArgs {
                server,
                clients,
                first: first_client,
                shared_ratio,
                relay,
                rate,
                concurrency,
                renewals,
                swchange_ratio,
                release_ratio,
                timeout: Duration::from_secs_f64(timeout),
                retries,
                threads,
                softwire_prefix,
            };
            let progress = Arc::new(AtomicU64::new(0));
            let bar = progress_bar(churn::steps(&args), progress.clone());
            let res = churn::run(&args, progress.clone());
            progress.store(u64::MAX, Ordering::Relaxed);
            if let Some(b) = bar {
                let _ = b.join();
            }
            let (mut r, ledger) = match res {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("loadgen: churn: {e}");
                    return ExitCode::from(1);
                }
            };
            if verify {
                let links = if relay {
                    vec![churn::RELAY_LINK]
                } else {
                    match churn::direct_source(server) {
                        Ok(a) => vec![a],
                        Err(e) => {
                            eprintln!("loadgen: verify: {e}");
                            return ExitCode::from(1);
                        }
                    }
                };
                match verify::query_links(server6_lq, &links, Duration::from_secs(30)) {
                    Ok(found) => {
                        let diffs = verify::compare(&ledger, &found);
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
                        if diffs.is_empty() {
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
            r
        }
        Cmd::Bulk {
            server6,
            server4,
            requestors,
            queries,
            duration,
            rate,
            queries_kinds,
            expect,
            timeout,
            ceiling,
            write_size,
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
                server6,
                server4,
                requestors,
                queries,
                duration: duration.map(Duration::from_secs_f64),
                rate,
                kinds,
                expect,
                timeout: Duration::from_secs_f64(timeout.max(0.001)),
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
