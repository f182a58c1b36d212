//! `loadgen` smoke tests against a server the test starts (small counts, bounded time): the
//! bulk scenario's counts and report files, its count check failing when it must, the
//! percentiles of an interval log read back, and the ceiling scenario.

mod common;

use std::fmt::Write as _;
use std::process::Command;

use common::{ServerBuilder, TempDir};

/// 300 DHCP4o6 bindings on link 2001:db8:1:: (every one also answers v4 "all").
fn import() -> String {
    let mut s = String::new();
    for i in 0..300u32 {
        writeln!(
            s,
            r#"{{"ipv4":"198.51.100.{}","psid":{{"offset":0,"len":4,"id":{}}},"chaddr":"0200000001{:02x}","client_id":"ff00000001000300010200000001{:04x}","state":"active","cltt":1767225600,"expires":4000000000,"link":"2001:db8:1::","softwire_src":"2001:db8:1::{:x}"}}"#,
            i / 16 + 1,
            i % 16,
            i % 256,
            i,
            i + 1
        )
        .unwrap();
    }
    s
}

fn loadgen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen")
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn bulk_scenario_counts_every_binding_and_writes_every_report() {
    // No authority: its pools would add their free addresses to "v4-all".
    let srv = ServerBuilder::new()
        .import(import())
        .arg("--no-authority")
        .start();
    let out = TempDir::new("lg-bulk");
    let (s6, s4) = (srv.lq6.to_string(), srv.lq4.to_string());
    let o = loadgen(&[
        "--out",
        out.path().to_str().unwrap(),
        "bulk",
        "--server6-lq",
        &s6,
        "--server4-lq",
        &s4,
        "--requestors",
        "2",
        "--queries",
        "6",
        "--query",
        "4o6-link:2001:db8:1::",
        "--query",
        "v4-all",
        "--expect",
        "300",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("sent: 12"), "{stdout}");
    assert!(stdout.contains("drops: 0 (0.00%)"), "{stdout}");
    let j = json(&out.path().join("summary.json"));
    assert_eq!(j["counters"]["sent"], 12);
    assert_eq!(j["counters"]["received"], 12);
    assert_eq!(j["counters"]["bindings"], 12 * 300);
    assert_eq!(j["metrics"]["bindings_per_stream"]["min"], 300);
    assert_eq!(j["metrics"]["bindings_per_stream"]["max"], 300);
    assert_eq!(j["metrics"]["time_to_first_binding"]["count"], 12);
    for m in [
        "time_to_first_binding",
        "stream_duration",
        "bindings_per_stream",
    ] {
        for ext in ["hgrm", "hlog", "svg"] {
            let f = out.path().join(format!("{m}.{ext}"));
            assert!(
                std::fs::metadata(&f)
                    .map(|m| m.len() > 100)
                    .unwrap_or(false),
                "{f:?}"
            );
        }
    }
    // The plots name the run and mark the percentiles.
    let svg = std::fs::read_to_string(out.path().join("stream_duration.svg")).unwrap();
    assert!(
        svg.contains("scenario bulk | ") && svg.contains(" UTC | server leasequery "),
        "{svg}"
    );
    assert!(svg.contains(&s6) && svg.contains(&s4), "{svg}");
    for mark in ["p50 = ", "p99 = ", "p99.9 = "] {
        assert!(svg.contains(mark), "{mark}");
    }
    // The interval log reads back to the same distribution.
    let p = loadgen(&[
        "percentiles",
        out.path()
            .join("bindings_per_stream.hlog")
            .to_str()
            .unwrap(),
    ]);
    let text = String::from_utf8_lossy(&p.stdout);
    assert!(p.status.success(), "{text}");
    assert!(text.contains("Total count    =           12]"), "{text}");
    assert!(text.contains("#[Max     =      300.000"), "{text}");
}

#[test]
fn bulk_scenario_fails_when_a_stream_is_short_of_the_expected_count() {
    // `--server6` here: the flag's first spelling, a hidden alias of `--server6-lq`.
    let srv = ServerBuilder::new().import(import()).start();
    let out = TempDir::new("lg-short");
    let s6 = srv.lq6.to_string();
    let o = loadgen(&[
        "--out",
        out.path().to_str().unwrap(),
        "bulk",
        "--server6",
        &s6,
        "--requestors",
        "1",
        "--queries",
        "2",
        "--query",
        "4o6-link:2001:db8:1::",
        "--expect",
        "301",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(j["counters"]["error_wrong_binding_count"], 2);
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let o = loadgen(&["bulk", "--query", "v6-relay:xyz"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an even number of hex digits"));
    let o = loadgen(&["bulk", "--requestors", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn ceiling_scenario_reports_a_rate() {
    let out = TempDir::new("lg-ceil");
    let o = loadgen(&[
        "--out",
        out.path().to_str().unwrap(),
        "ceiling",
        "--bytes",
        "20000000",
        "--runs",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = json(&out.path().join("summary.json"));
    assert_eq!(j["counters"]["runs"], 3);
    assert!(j["rates"]["median_bytes/s"].as_f64().unwrap() > 0.0);
    assert!(j["rates"]["min_bytes/s"].as_f64() <= j["rates"]["max_bytes/s"].as_f64());
}

/// A server with active leasequery on (no TLS) and room for the subscribers' connections.
fn active_server() -> common::Server {
    ServerBuilder::new()
        .arg("--active")
        .arg("--allow-insecure-active")
        .arg("--max-connections")
        .arg("40")
        .start()
}

/// The arguments that point an `active` / `mixed` run at `srv`.
fn active_args(srv: &common::Server, out: &TempDir) -> Vec<String> {
    vec![
        "--out".into(),
        out.path().to_str().unwrap().into(),
        "--server".into(),
        srv.dhcp4o6.to_string(),
        "--server6-lq".into(),
        srv.lq6.to_string(),
        "--server4-lq".into(),
        srv.lq4.to_string(),
        "--timeout".into(),
        "2".into(),
    ]
}

fn run_scenario(
    scenario: &str,
    srv: &common::Server,
    out: &TempDir,
    extra: &[&str],
) -> std::process::Output {
    let mut args = active_args(srv, out);
    args.insert(2, scenario.into());
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(&args)
        .output()
        .expect("run loadgen")
}

fn n(j: &serde_json::Value, k: &str) -> u64 {
    j["counters"][k].as_u64().unwrap_or(0)
}

/// Issue 6 `active` (and issue 5's latency figure): subscribers of the three forms bulk-load,
/// catch up, follow a churn of 150 clients with renewals, softwire changes and releases, and
/// end with exactly the clients' leases; the latency metrics are written.
#[test]
fn active_scenario_subscribers_end_with_the_clients_leases() {
    let srv = active_server();
    let out = TempDir::new("lg-active");
    let o = run_scenario(
        "active",
        &srv,
        &out,
        &[
            "--clients",
            "150",
            "--renewals",
            "2",
            "--swchange-ratio",
            "0.3",
            "--release-ratio",
            "0.2",
            "--subscribers",
            "6",
            "--verify",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("verify: OK, all 4 following subscribers' tables equal the ledger"),
        "{stdout}"
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "active_catch_up_complete"), 6);
    assert_eq!(n(&j, "verify_subscribers"), 4);
    assert_eq!(n(&j, "error_verify_subscribers_differing"), 0);
    let held = n(&j, "held");
    assert!(held > 90 && held < 150, "{held}");
    // Each 4o6 and v4 follower sees at least one update per client (its DORA).
    assert!(n(&j, "active_updates_4o6") >= 2 * 150, "{j}");
    assert!(n(&j, "active_updates_v4") >= 2 * 150, "{j}");
    assert_eq!(
        n(&j, "active_updates_v6"),
        0,
        "the churn changes no plain v6 binding"
    );
    // Every change the followers saw has a latency from its send; the ACTIVE ones from the ACK.
    let from_send = j["metrics"]["active_from_send"]["count"].as_u64().unwrap();
    let update = j["metrics"]["active_update"]["count"].as_u64().unwrap();
    assert!(from_send >= 4 * 150, "{from_send}");
    assert!(
        update >= 4 * 150 && update <= from_send,
        "{update} {from_send}"
    );
    for m in ["active_update", "active_from_send"] {
        for ext in ["hgrm", "hlog", "svg"] {
            let f = out.path().join(format!("{m}.{ext}"));
            assert!(
                std::fs::metadata(&f)
                    .map(|m| m.len() > 100)
                    .unwrap_or(false),
                "{f:?}"
            );
        }
    }
}

/// Issue 6 `mixed --verify`: churn, bulk requestors and subscribers at once; the bulk check and
/// every subscriber agree with the ledger (relayed clients).
#[test]
fn mixed_scenario_verifies_through_bulk_and_subscribers() {
    let srv = active_server();
    let out = TempDir::new("lg-mixed");
    let o = run_scenario(
        "mixed",
        &srv,
        &out,
        &[
            "--clients",
            "120",
            "--relay",
            "--rate",
            "400",
            "--subscribers",
            "3",
            "--requestors",
            "2",
            "--bulk-queries",
            "3",
            "--verify",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("***** mixed *****"), "{stdout}");
    assert!(
        stdout.contains("verify: OK, all 2 following subscribers'"),
        "{stdout}"
    );
    assert!(stdout.contains("verify: OK, the server's"), "{stdout}");
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "bulk_sent"), 6);
    assert_eq!(n(&j, "bulk_received"), 6);
    assert_eq!(n(&j, "error_verify_differences"), 0);
    assert_eq!(n(&j, "verify_ledger"), n(&j, "held"));
    assert!(
        j["metrics"]["time_to_first_binding"]["count"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn active_scenario_refuses_bad_arguments() {
    for bad in [
        &["active", "--subscribers", "0"][..],
        &["active", "--form", "v5"],
        &["mixed", "--requestors", "0"],
        &["active", "--settle", "-1"],
    ] {
        let o = loadgen(bad);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Issue 6 part 8: the README's newcomer path works as written: its first command's server
/// arguments, then its `loadgen mixed --verify` line (only the ports are the test's own, given
/// as the overriding flags, and the report directory a temporary one).
#[test]
fn readme_newcomer_path_verifies() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let args_of = |prefix: &str| -> Vec<String> {
        let line = readme
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("the README has a line starting {prefix:?}"));
        line[prefix.len()..]
            .split('#')
            .next()
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let mut b = ServerBuilder::new();
    for a in args_of("cargo run --release -- ") {
        b = b.arg(a);
    }
    let srv = b.start();
    let out = TempDir::new("lg-readme");
    let mut args = args_of("cargo run --release --bin loadgen -- --out lg-out mixed ");
    args.splice(0..0, active_args(&srv, &out));
    args.insert(2, "mixed".into());
    let o = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(&args)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{args:?}\n{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("verify: OK, all 2 following subscribers'"),
        "{stdout}"
    );
    assert!(stdout.contains("verify: OK, the server's"), "{stdout}");
    assert!(out.path().join("active_update.svg").exists());
}

/// Writes `values` as an interval log (two intervals, as loadgen writes its runs: V2 deflate,
/// 1..=1 h in microseconds, 3 significant digits) and runs `loadgen percentiles` on it.
fn percentiles_of(values: &[u64], tag: &str) -> String {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    use hdrhistogram::serialization::V2DeflateSerializer;
    use hdrhistogram::Histogram;
    let dir = TempDir::new(tag);
    let (a, b) = values.split_at(values.len() / 3);
    let mut bytes = Vec::new();
    {
        let mut ser = V2DeflateSerializer::new();
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600);
        let mut log = IntervalLogWriterBuilder::new()
            .with_start_time(t)
            .with_base_time(t)
            .begin_log_with(&mut bytes, &mut ser)
            .unwrap();
        for (i, part) in [a, b].iter().enumerate() {
            let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
            for v in *part {
                h.record(*v).unwrap();
            }
            let start = std::time::Duration::from_secs(i as u64);
            log.write_histogram(&h, start, std::time::Duration::from_secs(1), Tag::new("x"))
                .unwrap();
        }
    }
    let file = dir.path().join("x.hlog");
    std::fs::write(&file, bytes).unwrap();
    let o = loadgen(&["percentiles", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

/// A footer line's two numbers, e.g. `#[Mean    =     1000.500, StdDeviation   =  577.638]`.
fn footer(text: &str, prefix: &str) -> (f64, f64) {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} line in\n{text}"));
    let nums: Vec<f64> = line
        .split(['=', ',', ']'])
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    assert_eq!(nums.len(), 2, "{line}");
    (nums[0], nums[1])
}

/// Issue 19 item 9: `.hgrm` rows in HdrHistogram's `outputPercentileDistribution` layout, whose
/// `TotalCount` is the running total (values at or below the row's value), checked against
/// counts, mean and deviation computed here from the raw values (all below 2048, so every value
/// is its own bucket and the histogram is exact).
#[test]
fn hgrm_total_count_is_the_running_total_and_the_footer_is_the_histograms() {
    let values: Vec<u64> = (0..1000u64)
        .map(|i| (i * i * 7 + 3 * i) % 1999 + 1)
        .collect();
    let text = percentiles_of(&values, "lg-hgrm");
    let n = values.len() as f64;
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("       Value     Percentile TotalCount 1/(1-Percentile)")
    );
    assert_eq!(lines.next(), Some(""));
    let rows: Vec<Vec<&str>> = lines
        .take_while(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.len() > 20, "{text}");
    let mut last_total = 0u64;
    for (i, r) in rows.iter().enumerate() {
        let value: f64 = r[0].parse().unwrap();
        let q: f64 = r[1].parse().unwrap();
        let total: u64 = r[2].parse().unwrap();
        let at_or_below = values.iter().filter(|&&v| v as f64 <= value).count() as u64;
        let below = values.iter().filter(|&&v| (v as f64) < value).count() as f64;
        assert_eq!(total, at_or_below, "row {i}: {r:?}");
        assert!(total >= last_total, "row {i}: {r:?}");
        last_total = total;
        // The row's value is the smallest one that reaches its percentile level.
        assert!(total as f64 / n >= q - 1e-9, "row {i}: {r:?}");
        assert!(q == 0.0 || below / n < q + 1e-9, "row {i}: {r:?}");
        if i + 1 < rows.len() {
            assert_eq!(r.len(), 4, "row {i}: {r:?}");
            assert_eq!(r[3], format!("{:.2}", 1.0 / (1.0 - q)), "row {i}: {r:?}");
        } else {
            assert_eq!(r.len(), 3, "the 100% row has no 1/(1-Percentile): {r:?}");
            assert_eq!(r[1], "1.000000000000");
            assert_eq!(total, values.len() as u64, "the last row holds every value");
        }
    }
    let mean = values.iter().sum::<u64>() as f64 / n;
    let var = values
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let (m, sd) = footer(&text, "#[Mean    =");
    assert!((m - mean).abs() < 0.0006, "{m} vs {mean}");
    assert!((sd - var.sqrt()).abs() < 0.0006, "{sd} vs {}", var.sqrt());
    let (max, count) = footer(&text, "#[Max     =");
    assert_eq!(max, *values.iter().max().unwrap() as f64);
    assert_eq!(count, n);
    // 3 significant digits: 2048 sub-buckets; buckets until 2048 * 2^(b-1) passes 1 h in us.
    let (mut buckets, mut reach) = (1u64, 2048u64);
    while reach <= 3_600_000_000 {
        reach <<= 1;
        buckets += 1;
    }
    assert_eq!(
        footer(&text, "#[Buckets ="),
        (buckets as f64, 2048.0),
        "{text}"
    );
}

/// What HdrHistogram's own `outputPercentileDistribution(System.out, 1.0)` prints (Java,
/// HdrHistogram/HdrHistogram at de84b0a, `new Histogram(1, 3600000000L, 3)`) for the 3000
/// values of [`reference_values`].
const HDRHISTOGRAM_REFERENCE: &str = r#"       Value     Percentile TotalCount 1/(1-Percentile)

     721.000 0.000000000000          1           1.00
  180863.000 0.100000000000        300           1.11
  382463.000 0.200000000000        601           1.25
  563711.000 0.300000000000        900           1.43
  727039.000 0.400000000000       1201           1.67
  945663.000 0.500000000000       1500           2.00
 1058815.000 0.550000000000       1650           2.22
 1167359.000 0.600000000000       1800           2.50
 1276927.000 0.650000000000       1951           2.86
 1394687.000 0.700000000000       2100           3.33
 1492991.000 0.750000000000       2250           4.00
 1547263.000 0.775000000000       2325           4.44
 1597439.000 0.800000000000       2400           5.00
 1639423.000 0.825000000000       2475           5.71
 1697791.000 0.850000000000       2552           6.67
 1740799.000 0.875000000000       2625           8.00
 1768447.000 0.887500000000       2664           8.89
 1796095.000 0.900000000000       2701          10.00
 1827839.000 0.912500000000       2741          11.43
 1851391.000 0.925000000000       2775          13.33
 1875967.000 0.937500000000       2813          16.00
 1885183.000 0.943750000000       2832          17.78
 1901567.000 0.950000000000       2851          20.00
 1907711.000 0.956250000000       2869          22.86
 1916927.000 0.962500000000       2889          26.67
 1928191.000 0.968750000000       2910          32.00
 1933311.000 0.971875000000       2916          35.56
 1938431.000 0.975000000000       2925          40.00
 1947647.000 0.978125000000       2935          45.71
 1955839.000 0.981250000000       2944          53.33
 1964031.000 0.984375000000       2954          64.00
 1968127.000 0.985937500000       2959          71.11
 1972223.000 0.987500000000       2963          80.00
 1974271.000 0.989062500000       2968          91.43
 1980415.000 0.990625000000       2974         106.67
 1983487.000 0.992187500000       2979         128.00
 1983487.000 0.992968750000       2979         142.22
 1985535.000 0.993750000000       2983         160.00
 1986559.000 0.994531250000       2986         182.86
 1986559.000 0.995312500000       2986         213.33
 1987583.000 0.996093750000       2989         256.00
 1989631.000 0.996484375000       2990         284.44
 1990655.000 0.996875000000       2991         320.00
 1991679.000 0.997265625000       2992         365.71
 1995775.000 0.997656250000       2993         426.67
 1997823.000 0.998046875000       2995         512.00
 1997823.000 0.998242187500       2995         568.89
 1998847.000 0.998437500000       2996         640.00
 1998847.000 0.998632812500       2996         731.43
 1999871.000 0.998828125000       3000         853.33
 1999871.000 1.000000000000       3000
#[Mean    =   975355.550, StdDeviation   =   583558.892]
#[Max     =  1999871.000, Total count    =         3000]
#[Buckets =           22, SubBuckets     =         2048]
"#;

/// 3000 values from a 64-bit LCG (the Java program that printed the reference draws the same).
fn reference_values() -> Vec<u64> {
    let mut x = 42u64;
    (0..3000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            1 + (x >> 40) % 2_000_000
        })
        .collect()
}

/// Issue 19 item 9: for the same values, `loadgen percentiles` (the `.hgrm` writer) prints what
/// HdrHistogram's reference implementation prints, row for row and the footer.
#[test]
fn hgrm_equals_hdrhistograms_own_percentile_distribution() {
    let text = percentiles_of(&reference_values(), "lg-hgrm-ref");
    for (n, (ours, theirs)) in text.lines().zip(HDRHISTOGRAM_REFERENCE.lines()).enumerate() {
        assert_eq!(ours, theirs, "line {}", n + 1);
    }
    assert_eq!(text, HDRHISTOGRAM_REFERENCE);
}

/// A server whose only subnet serves relayed link 2001:db8:77::/48 (not the default setup's
/// prefixes, nor ::1) from 4 full addresses.
fn operator_server(dir: &TempDir) -> common::Server {
    let cfg = dir.path().join("lqd.toml");
    std::fs::write(
        &cfg,
        "[authority]\nserver_id = \"192.0.2.1\"\n[[authority.subnet]]\nname = \"op\"\n\
         links = [\"2001:db8:77::/48\"]\npool = \"203.0.113.10-203.0.113.13\"\n\
         lease_time = 3600\nrenew_time = 1800\nrebind_time = 3000\n",
    )
    .unwrap();
    ServerBuilder::new()
        .arg("--config")
        .arg(cfg.display().to_string())
        .start()
}

/// A churn of `extra` against `srv` (small timeouts: a client the server does not answer gives
/// up after 0.3 s + one retransmission).
fn churn(srv: &common::Server, out: &TempDir, extra: &[&str]) -> std::process::Output {
    let (udp, lq) = (srv.dhcp4o6.to_string(), srv.lq6.to_string());
    let mut args = vec![
        "--out",
        out.path().to_str().unwrap(),
        "churn",
        "--server",
        &udp,
        "--server6-lq",
        &lq,
        "--timeout",
        "0.3",
        "--retries",
        "1",
    ];
    args.extend_from_slice(extra);
    loadgen(&args)
}

/// Issue 19 item 9: `--link ADDR` drives an operator's own subnet (the relay's link-address
/// selects it); the default relay link does not match that config, and the clients left
/// without an OFFER are reported as such.
#[test]
fn churn_link_selects_the_operators_subnet() {
    let dir = TempDir::new("lg-link");
    let srv = operator_server(&dir);
    let out = TempDir::new("lg-link-out");
    let o = churn(
        &srv,
        &out,
        &[
            "--link",
            "2001:db8:77::",
            "--clients",
            "4",
            "--shared-ratio",
            "0",
            "--verify",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("verify: OK, the server's 4 active 4o6 bindings equal the ledger"),
        "{stdout}"
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "held"), 4);
    assert_eq!(n(&j, "timeouts"), 0);
    // The default relay link (2001:db8:1::) is no subnet of this server's.
    let o = churn(
        &srv,
        &out,
        &["--relay", "--first-client", "100", "--clients", "2"],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "no OFFER for 2 clients: the server's pool for this link may be exhausted \
             (relay link-address 2001:db8:1::"
        ),
        "{stdout}"
    );
}

/// Issue 19 item 9: a pool that runs out shows as "no OFFER for N clients", not as bare
/// timeouts.
#[test]
fn churn_says_when_the_pool_is_exhausted() {
    let dir = TempDir::new("lg-pool");
    let srv = operator_server(&dir);
    let out = TempDir::new("lg-pool-out");
    let o = churn(
        &srv,
        &out,
        &[
            "--link",
            "2001:db8:77::",
            "--clients",
            "7",
            "--shared-ratio",
            "0",
            "--renewals",
            "0",
            "--release-ratio",
            "0",
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "no OFFER for 3 clients: the server's pool for this link may be exhausted \
             (relay link-address 2001:db8:77::; 3 asked for a full address, 0 for a shared one"
        ),
        "{stdout}"
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "held"), 4);
    assert_eq!(n(&j, "timeouts_discover"), 3);
    assert!(
        j["notes"][0]
            .as_str()
            .is_some_and(|s| s.starts_with("no OFFER for 3 clients")),
        "{j}"
    );
}

/// Issue 19 item 9: a run whose exchanges were all lost leaves an empty ledger; verifying it
/// says FAILED with the reason instead of "OK, 0 bindings equal the ledger".
#[test]
fn verify_of_an_empty_ledger_after_drops_fails_with_the_reason() {
    // The leasequery port answers (no 4o6 bindings); nothing listens on the UDP port.
    let srv = ServerBuilder::new().arg("--no-authority").start();
    let out = TempDir::new("lg-empty");
    let udp = format!("[::1]:{}", common::free_port());
    let lq = srv.lq6.to_string();
    let o = loadgen(&[
        "--out",
        out.path().to_str().unwrap(),
        "churn",
        "--server",
        &udp,
        "--server6-lq",
        &lq,
        "--clients",
        "3",
        "--timeout",
        "0.2",
        "--retries",
        "0",
        "--verify",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("drops: 3 (100.00%)"), "{stdout}");
    assert!(!stdout.contains("verify: OK"), "{stdout}");
    assert!(
        stderr.contains("verify: FAILED, nothing verified: the ledger is empty because the clients' exchanges were lost (3 timeouts, 3 of 3 messages unanswered)"),
        "{stderr}"
    );
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "error_verify_empty_ledger"), 1);
}

/// Issue 19 item 9: one spelling of the server's leasequery addresses in every scenario
/// (`bulk`'s old `--server6` / `--server4` stay as hidden aliases, used by
/// `bulk_scenario_fails_when_a_stream_is_short_of_the_expected_count`), and `--help` of the
/// churn scenarios says how the server picks the subnet and offers `--link`.
#[test]
fn every_scenario_spells_the_server_addresses_alike() {
    for scenario in ["bulk", "churn", "active", "mixed"] {
        let o = loadgen(&[scenario, "--help"]);
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{scenario}: {help}");
        assert!(
            help.contains("--server6-lq <SERVER6_LQ>"),
            "{scenario}: {help}"
        );
        assert_eq!(
            help.matches("--server6").count(),
            help.matches("--server6-lq").count(),
            "{scenario}: no other spelling shown: {help}"
        );
        if scenario != "churn" {
            assert!(
                help.contains("--server4-lq <SERVER4_LQ>"),
                "{scenario}: {help}"
            );
        }
        if scenario != "bulk" {
            assert!(help.contains("--link <ADDR>"), "{scenario}: {help}");
            assert!(
                help.contains("How the server picks the subnet"),
                "{scenario}: {help}"
            );
            assert!(help.contains("IPv6 source address"), "{scenario}: {help}");
        }
    }
}

/// Issue 19 item 9: `loadgen mixed --verify` with no scenario options (only where the server
/// is and where the report goes) passes against the quick-start server: the default clients fit
/// the embedded default setup's pools.
#[test]
fn mixed_defaults_fit_the_quick_start_server() {
    let srv = ServerBuilder::new()
        .arg("--import")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/demo-leases.jsonl"
        ))
        .arg("--active")
        .arg("--allow-insecure-active")
        .start();
    let out = TempDir::new("lg-defaults");
    let (udp, l6, l4) = (
        srv.dhcp4o6.to_string(),
        srv.lq6.to_string(),
        srv.lq4.to_string(),
    );
    let o = loadgen(&[
        "--out",
        out.path().to_str().unwrap(),
        "mixed",
        "--server",
        &udp,
        "--server6-lq",
        &l6,
        "--server4-lq",
        &l4,
        "--verify",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!stdout.contains("no OFFER"), "{stdout}");
    assert!(stdout.contains("verify: OK, the server's"), "{stdout}");
    let j = json(&out.path().join("summary.json"));
    assert_eq!(n(&j, "timeouts"), 0);
    assert!(n(&j, "held") > 800, "{j}");
}
