//! Metrics and reports: per-thread HdrHistograms merged at the end, 1-second interval
//! histograms for the interval log, and the files written under `--out`:
//!
//! | file | what |
//! |---|---|
//! | `summary.txt` | perfdhcp-style plain summary: sent, received, drops, rate, min/avg/max/stddev per metric |
//! | `summary.json` | the same for scripts |
//! | `<metric>.hgrm` | HdrHistogram percentile distribution (the format of `outputPercentileDistribution`) |
//! | `<metric>.hlog` | interval log (V2 compressed histograms, tag = metric), readable by HistogramLogProcessor |
//! | `<metric>.svg` | percentile plot (value against 1/(1-percentile), log scale) |
//!
//! Values are recorded in microseconds unless the metric says otherwise.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use serde::Serialize;

pub use crate::metric::{histogram, percentile_rows, Metric};

/// Counters of a run, by name (sent, received, drops, timeouts, errors by kind ...).
pub type Counters = BTreeMap<String, u64>;

/// Everything a scenario measured.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Scenario name.
    pub scenario: String,
    /// The command line, for the record.
    pub command: String,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// Counters summed over threads.
    pub counters: Counters,
    /// Metrics merged over threads.
    pub metrics: Vec<Metric>,
    /// Rates worth a line of their own (name -> per second), e.g. bindings/s.
    pub rates: BTreeMap<String, f64>,
    /// Sentences that explain the counters (e.g. why DISCOVERs timed out), printed last.
    pub notes: Vec<String>,
    /// The server's addresses as the run used them, for the plots.
    pub server: String,
}

impl RunReport {
    /// Adds a thread's counters and metrics.
    pub fn absorb(&mut self, counters: &Counters, metrics: &[Metric]) {
        for (k, v) in counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        for m in metrics {
            match self.metrics.iter_mut().find(|x| x.name == m.name) {
                Some(x) => x.merge(m),
                None => self.metrics.push(m.clone()),
            }
        }
    }

    /// The summary in the words perfdhcp users know.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let secs = self.elapsed.as_secs_f64();
        let _ = writeln!(s, "***** {} *****", self.scenario);
        let _ = writeln!(s, "command: {}", self.command);
        let _ = writeln!(s, "run time: {secs:.3} s");
        for (k, v) in &self.counters {
            let _ = writeln!(s, "{k}: {v}");
        }
        let sent = self.counters.get("sent").copied().unwrap_or(0);
        let received = self.counters.get("received").copied().unwrap_or(0);
        if sent > 0 {
            let _ = writeln!(
                s,
                "drops: {} ({:.2}%)",
                sent.saturating_sub(received),
                100.0 * sent.saturating_sub(received) as f64 / sent as f64
            );
        }
        if secs > 0.0 && received > 0 {
            let _ = writeln!(s, "rate: {:.1} received/s", received as f64 / secs);
        }
        for (k, v) in &self.rates {
            let _ = writeln!(s, "{k}: {v:.1}");
        }
        for m in &self.metrics {
            let h = &m.total;
            if h.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                "{} ({}): n={} min={} avg={:.1} max={} stddev={:.1} p50={} p99={} p99.9={}",
                m.name,
                m.unit,
                h.len(),
                h.min(),
                h.mean(),
                h.max(),
                h.stdev(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999)
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "{n}");
        }
        s
    }

    /// The JSON summary.
    pub fn json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct M<'a> {
            unit: &'a str,
            count: u64,
            min: u64,
            mean: f64,
            max: u64,
            stddev: f64,
            p50: u64,
            p90: u64,
            p99: u64,
            p999: u64,
        }
        let metrics: BTreeMap<&str, M<'_>> = self
            .metrics
            .iter()
            .filter(|m| !m.total.is_empty())
            .map(|m| {
                let h = &m.total;
                (
                    m.name,
                    M {
                        unit: m.unit,
                        count: h.len(),
                        min: h.min(),
                        mean: h.mean(),
                        max: h.max(),
                        stddev: h.stdev(),
                        p50: h.value_at_quantile(0.5),
                        p90: h.value_at_quantile(0.9),
                        p99: h.value_at_quantile(0.99),
                        p999: h.value_at_quantile(0.999),
                    },
                )
            })
            .collect();
        serde_json::json!({
            "scenario": self.scenario,
            "command": self.command,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "counters": self.counters,
            "rates": self.rates,
            "metrics": metrics,
            "notes": self.notes,
        })
    }

    /// The samples of metric `name` recorded as 0 and why (the plot shades them).
    fn zeros_of(&self, name: &str) -> Option<(u64, String)> {
        let n = match name {
            "active_update" => self.counters.get("active_update_before_ack").copied()?,
            _ => return None,
        };
        Some((
            n,
            "the update reached the subscriber before the client had read its DHCPACK \
             (active_update_before_ack)"
                .into(),
        ))
    }

    /// Writes every report file into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("summary.txt"), self.summary())?;
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_string_pretty(&self.json())? + "\n",
        )?;
        let date = utc_date(SystemTime::now());
        for m in self.metrics.iter().filter(|m| !m.total.is_empty()) {
            std::fs::write(dir.join(format!("{}.hgrm", m.name)), hgrm(&m.total, 1.0))?;
            let mut f =
                io::BufWriter::new(std::fs::File::create(dir.join(format!("{}.hlog", m.name)))?);
            write_hlog(&mut f, m)?;
            f.flush()?;
            let ctx = crate::plot::PlotContext {
                scenario: self.scenario.clone(),
                date: date.clone(),
                server: self.server.clone(),
                zeros: self.zeros_of(m.name),
            };
            crate::plot::percentile_svg(&dir.join(format!("{}.svg", m.name)), m, &ctx)?;
        }
        Ok(())
    }
}

/// The percentile distribution in HdrHistogram's text format, as its
/// `outputPercentileDistribution` writes it (5 ticks per half distance): per row the value (divided
/// by `scale`, as many decimals as the histogram's significant digits), the percentile level
/// iterated to, the running total of values up to that value (`TotalCount`: the last row holds
/// the histogram's count) and 1/(1-percentile); then the `#[Mean ..]`, `#[Max ..]` and
/// `#[Buckets ..]` footer.
pub fn hgrm(h: &Histogram<u64>, scale: f64) -> String {
    let mut s = String::new();
    let digits = usize::from(h.sigfig());
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for (value, level, total) in percentile_rows(h, 5) {
        let q = level / 100.0;
        let value = value as f64 / scale;
        if level != 100.0 {
            let _ = writeln!(
                s,
                "{value:12.digits$} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(s, "{value:12.digits$} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:12.digits$}, StdDeviation   = {:12.digits$}]",
        h.mean() / scale,
        h.stdev() / scale
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.digits$}, Total count    = {:12}]",
        h.max() as f64 / scale,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        // HdrHistogram's sub-bucket count: 2^ceil(log2(2 * 10^significant digits)).
        1u64 << (2.0 * 10f64.powi(i32::from(h.sigfig()))).log2().ceil() as u32
    );
    s
}

/// `t` as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Writes a metric's intervals as an HdrHistogram interval log (V2 deflate).
pub fn write_hlog<W: io::Write>(w: &mut W, m: &Metric) -> io::Result<()> {
    let mut ser = V2DeflateSerializer::new();
    let now = SystemTime::now();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment(&format!("leasequeryd loadgen: {} ({})", m.name, m.unit))
        .with_start_time(now)
        .with_base_time(now)
        .begin_log_with(w, &mut ser)?;
    let tag = Tag::new(m.name);
    for (start, h) in &m.intervals {
        log.write_histogram(h, *start, Duration::from_secs(1), tag)
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
    }
    Ok(())
}

/// Reads an interval log back: the sum of its histograms (for checks and for merging runs).
pub fn read_hlog(bytes: &[u8]) -> io::Result<Histogram<u64>> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let mut total = histogram();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        match entry.map_err(|e| io::Error::other(format!("{e:?}")))? {
            LogEntry::Interval(ilh) => {
                use base64::Engine as _;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(ilh.encoded_histogram())
                    .map_err(|e| io::Error::other(format!("bad base64 in interval log: {e}")))?;
                let h: Histogram<u64> = de
                    .deserialize(&mut io::Cursor::new(raw))
                    .map_err(|e| io::Error::other(format!("{e:?}")))?;
                total
                    .add(&h)
                    .map_err(|e| io::Error::other(format!("{e:?}")))?;
            }
            LogEntry::StartTime(_) | LogEntry::BaseTime(_) => {}
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(seed: u64, n: u64) -> Metric {
        let mut m = Metric::new("latency", "us");
        let mut x = seed;
        for i in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            m.record(Duration::from_millis(i * 3), 1 + (x >> 44) % 50_000);
        }
        m.finish();
        m
    }

    #[test]
    fn merged_histograms_count_every_value_and_keep_percentiles() {
        let (a, b) = (filled(1, 2000), filled(2, 3000));
        let mut all = histogram();
        all.add(&a.total).unwrap();
        all.add(&b.total).unwrap();
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m.total.len(), 5000);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(m.total.value_at_quantile(q), all.value_at_quantile(q));
        }
        // Intervals merge by start: their counts add up to the total.
        let n: u64 = m.intervals.iter().map(|(_, h)| h.len()).sum();
        assert_eq!(n, 5000);
        assert_eq!(
            m.intervals.len(),
            9,
            "3000 values 3 ms apart span 9 seconds"
        );
    }

    #[test]
    fn hlog_round_trip_gives_the_same_percentiles() {
        let m = filled(7, 4000);
        let mut bytes = Vec::new();
        write_hlog(&mut bytes, &m).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("#[StartTime: "), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.contains("Tag=latency")).count(),
            12
        );
        let back = read_hlog(&bytes).unwrap();
        assert_eq!(back.len(), m.total.len());
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                back.value_at_quantile(q),
                m.total.value_at_quantile(q),
                "q={q}"
            );
        }
    }

    #[test]
    fn hgrm_has_the_standard_layout() {
        let m = filled(3, 1000);
        let t = hgrm(&m.total, 1.0);
        assert!(t.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(t.contains("#[Max     = "));
        assert!(t.contains("Total count    =         1000]"));
        // The last distribution line is the 100th percentile at the maximum.
        let last = t
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap();
        assert!(last.contains("1.000000000000"), "{last}");
    }

    #[test]
    fn utc_dates_are_civil() {
        let at = |s: u64| utc_date(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00 UTC");
        assert_eq!(at(951_782_400 + 3_661), "2000-02-29 01:01 UTC");
        assert_eq!(at(1_767_225_600 - 60), "2025-12-31 23:59 UTC");
    }

    #[test]
    fn summary_speaks_perfdhcp() {
        let mut r = RunReport {
            scenario: "bulk".into(),
            ..Default::default()
        };
        r.elapsed = Duration::from_secs(2);
        let mut c = Counters::new();
        c.insert("sent".into(), 10);
        c.insert("received".into(), 8);
        r.absorb(&c, &[filled(1, 100)]);
        let s = r.summary();
        assert!(s.contains("sent: 10"));
        assert!(s.contains("drops: 2 (20.00%)"));
        assert!(s.contains("rate: 4.0 received/s"));
        assert!(s.contains("latency (us): n=100 min="));
        let j = r.json();
        assert_eq!(j["counters"]["received"], 8);
        assert_eq!(j["metrics"]["latency"]["count"], 100);
    }
}
