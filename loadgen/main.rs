//! `loadgen`: the load generator bundled with leasequeryd. Each scenario runs bounded (by count
//! and duration), records HdrHistograms per thread, merges them, prints a perfdhcp-style
//! summary and writes the report files (see `report.rs`) under `--out`.
//!
//! Scenarios available now: `bulk` (K bulk requestors of every query kind) and `ceiling` (the
//! loopback limit for bulk streaming). The DHCP4o6 churn, active-subscriber and mixed scenarios
//! come with the server's authority and active leasequery.

mod bulk;
mod ceiling;
mod plot;
mod report;
mod requestor;

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
