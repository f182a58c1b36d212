//! One measured quantity of a run ([`Metric`]: a whole-run HdrHistogram and its 1-second
//! intervals) and HdrHistogram's percentile rows, shared by the reports and the plots.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest value a histogram tracks: one hour in microseconds (or one billion of a count).
const HIGHEST: u64 = 3_600_000_000;

/// A new histogram with 3 significant digits, 1..=HIGHEST.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST, 3).expect("valid bounds")
}

/// One metric recorded by one thread: the whole-run histogram and the current interval's.
#[derive(Debug, Clone)]
pub struct Metric {
    /// What it measures, e.g. `time_to_first_binding`.
    pub name: &'static str,
    /// Its unit, e.g. `us`.
    pub unit: &'static str,
    /// Every value of the run.
    pub total: Histogram<u64>,
    /// Finished 1-second intervals: (start offset from the run's start, histogram).
    pub intervals: Vec<(Duration, Histogram<u64>)>,
    current: Histogram<u64>,
    current_start: Duration,
}

impl Metric {
    /// An empty metric.
    pub fn new(name: &'static str, unit: &'static str) -> Metric {
        Metric {
            name,
            unit,
            total: histogram(),
            intervals: Vec::new(),
            current: histogram(),
            current_start: Duration::ZERO,
        }
    }

    /// Records `value` seen at `at` (offset from the run's start).
    pub fn record(&mut self, at: Duration, value: u64) {
        while at >= self.current_start + Duration::from_secs(1) {
            self.roll();
        }
        self.total.saturating_record(value.max(1));
        self.current.saturating_record(value.max(1));
    }

    fn roll(&mut self) {
        let next = self.current_start + Duration::from_secs(1);
        if !self.current.is_empty() {
            let h = std::mem::replace(&mut self.current, histogram());
            self.intervals.push((self.current_start, h));
        }
        self.current_start = next;
    }

    /// Closes the open interval (call once, when the thread is done).
    pub fn finish(&mut self) {
        if !self.current.is_empty() {
            let h = std::mem::replace(&mut self.current, histogram());
            self.intervals.push((self.current_start, h));
        }
    }

    /// Adds another thread's metric of the same name (intervals with the same start merge).
    pub fn merge(&mut self, other: &Metric) {
        self.total.add(&other.total).expect("same bounds");
        let mut by_start: BTreeMap<Duration, Histogram<u64>> =
            std::mem::take(&mut self.intervals).into_iter().collect();
        for (start, h) in &other.intervals {
            by_start
                .entry(*start)
                .or_insert_with(histogram)
                .add(h)
                .expect("same bounds");
        }
        self.intervals = by_start.into_iter().collect();
    }
}

/// The rows of HdrHistogram's percentile distribution, (value, percentile level 0..=100, count
/// of values up to the value), stepped as the reference implementation's `PercentileIterator`
/// steps: `ticks_per_half` levels per half of the distance left to 100 %, a row at the first
/// bucket whose running total reaches the level (several rows for one bucket that passes
/// several levels), and once every value is counted one last row at 100 %. (The hdrhistogram
/// crate's quantile iterator sums its steps as fractions and misses a level that a bucket
/// reaches exactly, e.g. 900 of 3000 values at 30 %.)
pub fn percentile_rows(h: &Histogram<u64>, ticks_per_half: u32) -> Vec<(u64, f64, u64)> {
    let n = h.len();
    let mut rows = Vec::new();
    let mut level = 0.0f64;
    let mut total = 0u64;
    let mut value = 0u64;
    for v in h.iter_recorded() {
        total += v.count_at_value();
        value = v.value_iterated_to();
        while 100.0 * total as f64 / n as f64 >= level {
            rows.push((value, level, total));
            // The reference's tick: fixed within each half distance to 100 %.
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64;
            let ticks = i64::from(ticks_per_half) * 2f64.powf((halvings + 1) as f64) as i64;
            level += 100.0 / ticks as f64;
            if total >= n {
                rows.push((value, 100.0, total));
                return rows;
            }
        }
    }
    if n > 0 {
        rows.push((value, 100.0, n));
    }
    rows
}
