//! `lqctl`: a leasequery requestor for operators and lwAFTR control planes.
//!
//! `lqctl bulk` sends one bulk leasequery (RFC 5460, RFC 6926, DHCP4o6) to each `--server`,
//! merges the answers by binding key and writes them to stdout in the `--format` asked for
//! (`table`, `jsonl` in the import-file format, `csv`, `snabb`, `snabb-json`).
//!
//! Exit codes: 0 done; 1 a server answered an error status or a connection failed (the other
//! servers' bindings are still written); 2 bad arguments; 3 done, but keys answered by more
//! than one server were left out (conflicts, reported on stderr).
//!
//! `lqctl watch` follows the servers' bindings (bulk load, then active leasequery with
//! catch-up, RFC 7653 / RFC 7724) and writes every change.
//!
//! Modules: `net` (the connection: the one `connect`), `bulk` (one server's query and the
//! progress line), `merge` (several servers), `format` (the output formats, shared with any
//! other subcommand that writes bindings), `watch` (the `watch` subcommand around
//! `leasequery::requestor::watch`), `snabb` (watch's Snabb binding-table file and commands).

mod bulk;
mod format;
mod merge;
mod net;
mod snabb;
mod watch;

use std::io::{BufWriter, Write};
use std::net::Ipv6Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use leasequery::requestor::{Lease, QueryKind};

use format::{Format, Options};
use net::Server;

/// Exit code: a server answered an error status or a connection failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad arguments (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: done, but conflicting keys were left out.
pub const EXIT_CONFLICTS: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "lqctl",
    version,
    about = "Leasequery requestor: dump the bindings of leasequeryd (or any RFC 5460 / RFC 6926 / DHCP4o6 leasequery server)",
    long_about = "Leasequery requestor for operators and lwAFTR control planes.\n\n\
        `lqctl bulk` sends one bulk leasequery to each --server (TCP 547 for v6 and DHCP4o6 \
        queries, TCP 67 for DHCPv4, unless ADDR names a port), merges the answers by binding \
        key ((IPv4, PSID) for v4 and DHCP4o6, (DUID, link) for v6) and writes them to stdout.\n\n\
        `lqctl watch` follows the servers (bulk load, then active leasequery with catch-up) and \
        writes every change; see `lqctl watch --help`.\n\n\
        Exit codes: 0 done; 1 a server answered an error status or a connection failed \
        (the other servers' bindings are still written); 2 bad arguments; 3 done, but keys \
        answered by more than one server were left out (each reported on stderr).",
    after_help = "Examples:\n  \
        lqctl bulk --server 192.0.2.1 --query 4o6-link:2001:db8:1:: --format jsonl > leases.jsonl\n  \
        lqctl bulk --server [2001:db8::1]:547 --server 2001:db8::2 --query v6-link:2001:db8:2:: --verbose\n  \
        lqctl bulk --server 192.0.2.1 --query 4o6-link:2001:db8:1:: --format snabb --br-address 2001:db8::ff"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One bulk leasequery per server; the merged bindings to stdout.
    #[command(
        long_about = "One bulk leasequery per server (each on its own thread); the bindings to \
            stdout in --format. With one server they are written as they arrive; with several, \
            merged by key ((IPv4, PSID) for v4 and 4o6, (DUID, link) for v6) and written sorted \
            by key. A key two servers answered is a conflict: reported on stderr and counted, \
            and neither binding is written. A summary line goes to stderr at exit; on a \
            terminal a dump of more than a second shows a progress line.\n\n\
            Exit codes: 0 done; 1 a server answered an error status or a connection failed \
            (the other servers' bindings are still written); 2 bad arguments; 3 done, but \
            conflicting keys were left out.",
        after_help = "Examples:\n  \
            lqctl bulk --server 192.0.2.1 --query 4o6-link:2001:db8:1:: --format jsonl > leases.jsonl\n  \
            lqctl bulk --server 192.0.2.1:10067 --query v4-mac:02:00:00:00:00:01\n  \
            lqctl bulk --server 192.0.2.1 --server 192.0.2.2 --query 4o6-link:2001:db8:1:: \
            --format snabb-json --br-address 2001:db8::ff"
    )]
    Bulk(BulkArgs),
    /// Follow the servers' bindings (bulk load, then active leasequery with catch-up) and
    /// write every change; optionally keep a state file and a Snabb lwAFTR current.
    Watch(watch::WatchArgs),
}

/// The server, query and output flags every subcommand shares.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// A leasequery server: ADDR, ADDR:PORT, [IPv6]:PORT or HOST[:PORT] (repeat for several;
    /// the port defaults to 547 for v6 and 4o6 queries, 67 for v4).
    #[arg(long = "server", value_name = "ADDR", required = true)]
    pub servers: Vec<Server>,
    /// Output format: table, jsonl (the import-file format), csv, snabb, snabb-json.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// The lwAFTR's address, written as every softwire's br-address (required by the snabb
    /// formats).
    #[arg(long, value_name = "ADDR")]
    pub br_address: Option<Ipv6Addr>,
    /// Seconds to wait for a connection and for each read before the server counts as failed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Per-server connection state and progress on stderr.
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    pub tls: net::TlsArgs,
}

/// `lqctl bulk`.
#[derive(Args, Debug, Clone)]
pub struct BulkArgs {
    /// What to ask: v6-link:ADDR, v6-relay:HEX, v6-remote:HEX, v6-client:HEX, v6-address:ADDR,
    /// v4-all, v4-relay:HEX, v4-remote:HEX, v4-client:HEX, v4-mac:MAC, 4o6-link:ADDR,
    /// 4o6-relay:HEX, 4o6-remote:HEX, 4o6-client:HEX, 4o6-address:ADDR.
    #[arg(long, value_name = "KIND")]
    pub query: QueryKind,
    #[command(flatten)]
    pub common: Common,
}

fn main() -> ExitCode {
    // `lqctl --man-page DIR`: the man pages (lqctl.1 and one per subcommand) generated from the
    // clap definitions into DIR (dist/man/; tests/packaging.rs keeps them equal). Not a clap
    // flag, so that it stays out of the pages themselves (as leasequeryd's and loadgen's).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "--man-page")
    {
        use clap::CommandFactory;
        let Some(dir) = std::env::args_os().nth(2) else {
            return usage("--man-page needs a directory");
        };
        return match clap_mangen::generate_to(Cli::command(), &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lqctl: cannot write the man pages: {e}");
                ExitCode::from(1)
            }
        };
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Bulk(a) => run_bulk(&a),
        Cmd::Watch(a) => watch::run(&a),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("lqctl: {msg}");
    ExitCode::from(EXIT_USAGE)
}

fn run_bulk(a: &BulkArgs) -> ExitCode {
    let c = &a.common;
    let opts = Options {
        br_address: c.br_address,
        ops: false,
    };
    let mut fmt = match format::formatter(c.format, &opts) {
        Ok(f) => f,
        Err(e) => return usage(&e),
    };
    let tls = match c.tls.tls() {
        Ok(t) => t,
        Err(e) => return usage(&e),
    };
    let t0 = Instant::now();
    let progress = bulk::Progress::new(true);
    let jobs: Vec<bulk::Job> = c
        .servers
        .iter()
        .enumerate()
        .map(|(index, s)| bulk::Job {
            index,
            server: s.clone(),
            kind: a.query.clone(),
            timeout: Duration::from_secs(c.timeout),
            tls: tls.clone(),
            verbose: c.verbose,
            progress: progress.clone(),
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut failed = 0usize;
    let mut written = 0u64;
    let mut conflicts = 0usize;
    let mut write_err = None;
    if let Err(e) = fmt.header(&mut out) {
        return usage(&format!("writing output: {e}"));
    }
    if jobs.len() == 1 {
        // One server: its bindings go out as they come, in its order.
        let job = &jobs[0];
        let r = job.run(&mut |l: Lease| match fmt.binding(&mut out, &l, None) {
            Ok(w) => {
                written += u64::from(w);
                Ok(())
            }
            Err(e) => Err(format!("writing output: {e}")),
        });
        if let Err(e) = r {
            eprintln!("lqctl: {e}");
            failed += 1;
        }
    } else {
        // Several: each answer in full (one thread per server), then merged.
        let results: Vec<Result<Vec<Lease>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|job| {
                    s.spawn(move || {
                        let mut v = Vec::new();
                        job.run(&mut |l| {
                            v.push(l);
                            Ok(())
                        })
                        .map(|_| v)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("query thread panicked".into()))
                })
                .collect()
        });
        let mut per_server = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(v) => per_server.push(v),
                Err(e) => {
                    eprintln!("lqctl: {e}");
                    failed += 1;
                    per_server.push(Vec::new());
                }
            }
        }
        let merged = merge::merge(per_server);
        for cf in &merged.conflicts {
            let names: Vec<String> = cf.servers.iter().map(|&i| jobs[i].label()).collect();
            eprintln!(
                "lqctl: conflict: {} answered by {}; not written",
                cf.key,
                names.join(" and ")
            );
        }
        conflicts = merged.conflicts.len();
        for l in &merged.bindings {
            match fmt.binding(&mut out, l, None) {
                Ok(w) => written += u64::from(w),
                Err(e) => {
                    write_err = Some(e);
                    break;
                }
            }
        }
    }
    progress.finish();
    let end = fmt.footer(&mut out).and_then(|()| out.flush());
    if let Some(e) = write_err.or(end.err()) {
        eprintln!("lqctl: writing output: {e}");
        failed = failed.max(1);
    }
    eprintln!(
        "lqctl: {} server(s): {} answered, {} failed; {} bindings received, {} written, {} conflicts; {:.3} s, {:.0} bindings/s",
        jobs.len(),
        jobs.len() - failed.min(jobs.len()),
        failed.min(jobs.len()),
        progress.total(),
        written,
        conflicts,
        t0.elapsed().as_secs_f64(),
        progress.total() as f64 / t0.elapsed().as_secs_f64().max(1e-9)
    );
    if failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else if conflicts > 0 {
        ExitCode::from(EXIT_CONFLICTS)
    } else {
        ExitCode::SUCCESS
    }
}
