//! A log-line rate limiter, sans-io: the caller passes `now`, the time on a monotonic clock of
//! its choosing as a [`Duration`] since that clock's origin (the shell: since its start).
//!
//! [`RateLimiter::hit`] is called once per event of a kind (a drop reason); it says whether to
//! write a line now and, when it does, how many events of that kind were suppressed since the
//! kind's previous line. At most one line per kind per window; the first event of a kind (or
//! the first after a quiet window) is logged at once. [`RateLimiter::flush`] hands back what
//! is still suppressed (at exit), so every event is either a line or counted in one.
//!
//! Used by the shards for the drop warnings (README "Drop warnings"); one limiter per shard.

use std::time::Duration;

/// One kind's state.
#[derive(Debug, Clone, Copy)]
struct Entry<K> {
    key: K,
    /// When the kind's last line was written.
    logged_at: Duration,
    /// Events of the kind since that line, not written.
    suppressed: u64,
}

/// At most one line per kind per `window`. Kinds are few (a fixed set of reasons): they are
/// kept in a small vector, at most `max_kinds` of them (events of further kinds are always
/// logged, so nothing is hidden by the bound).
#[derive(Debug, Clone)]
pub struct RateLimiter<K> {
    window: Duration,
    max_kinds: usize,
    entries: Vec<Entry<K>>,
}

impl<K: Copy + PartialEq> RateLimiter<K> {
    /// A limiter of one line per kind per `window`, tracking at most 64 kinds.
    pub fn new(window: Duration) -> RateLimiter<K> {
        RateLimiter {
            window,
            max_kinds: 64,
            entries: Vec::new(),
        }
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// One event of `key` at `now`: `Some(suppressed)` when a line is to be written now
    /// (`suppressed` = events of `key` not written since its previous line), `None` when this
    /// event is suppressed (and counted for the next line). A `now` earlier than the last line
    /// (a clock that is not monotonic) never logs early.
    pub fn hit(&mut self, key: K, now: Duration) -> Option<u64> {
        match self.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                if now.saturating_sub(e.logged_at) >= self.window {
                    let n = e.suppressed;
                    e.suppressed = 0;
                    e.logged_at = now;
                    Some(n)
                } else {
                    e.suppressed += 1;
                    None
                }
            }
            None => {
                if self.entries.len() < self.max_kinds {
                    self.entries.push(Entry {
                        key,
                        logged_at: now,
                        suppressed: 0,
                    });
                }
                Some(0)
            }
        }
    }

    /// The kinds with events suppressed since their last line, with their counts; the counts
    /// are reset (a later [`RateLimiter::hit`] still waits for the window).
    pub fn flush(&mut self) -> Vec<(K, u64)> {
        self.entries
            .iter_mut()
            .filter(|e| e.suppressed > 0)
            .map(|e| (e.key, std::mem::take(&mut e.suppressed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(10);

    #[test]
    fn first_event_logs_then_one_line_per_window_with_the_suppressed_count() {
        let t0 = Duration::ZERO;
        let mut r = RateLimiter::new(W);
        assert_eq!(r.hit("a", t0), Some(0));
        for i in 1..=999u64 {
            assert_eq!(r.hit("a", t0 + Duration::from_millis(i)), None);
        }
        // Just before the window ends: still suppressed.
        assert_eq!(r.hit("a", t0 + W - Duration::from_nanos(1)), None);
        // At the window: a line, carrying the 1000 suppressed events.
        assert_eq!(r.hit("a", t0 + W), Some(1000));
        // The next window counts from that line.
        assert_eq!(r.hit("a", t0 + W + Duration::from_secs(1)), None);
        assert_eq!(r.hit("a", t0 + W + W), Some(1));
        // A quiet kind logs at once, with nothing suppressed.
        assert_eq!(r.hit("a", t0 + Duration::from_secs(3600)), Some(0));
    }

    #[test]
    fn kinds_are_limited_independently() {
        let t0 = Duration::ZERO;
        let mut r = RateLimiter::new(W);
        assert_eq!(r.hit(1u8, t0), Some(0));
        assert_eq!(r.hit(2u8, t0), Some(0));
        assert_eq!(r.hit(1u8, t0), None);
        assert_eq!(r.hit(1u8, t0), None);
        assert_eq!(r.hit(2u8, t0 + W), Some(0));
        assert_eq!(r.hit(1u8, t0 + W), Some(2));
    }

    #[test]
    fn flush_returns_and_resets_what_is_suppressed() {
        let t0 = Duration::ZERO;
        let mut r = RateLimiter::new(W);
        r.hit("a", t0);
        r.hit("a", t0);
        r.hit("a", t0);
        r.hit("b", t0);
        assert_eq!(r.flush(), vec![("a", 2)]);
        assert!(r.flush().is_empty());
        // Flushing does not open the window early.
        assert_eq!(r.hit("a", t0 + Duration::from_secs(1)), None);
        assert_eq!(r.flush(), vec![("a", 1)]);
    }

    #[test]
    fn every_event_is_a_line_or_counted_in_one() {
        // 10,000 events of 3 kinds over 95 s of virtual time: lines + suppressed + flushed
        // equals the events, and no kind has two lines within one window.
        let t0 = Duration::ZERO;
        let mut r = RateLimiter::new(W);
        let mut lines: Vec<(u8, Duration)> = Vec::new();
        let mut counted = 0u64;
        for i in 0..10_000u64 {
            let kind = (i % 3) as u8;
            let now = t0 + Duration::from_micros(i * 9_500);
            if let Some(s) = r.hit(kind, now) {
                lines.push((kind, now));
                counted += 1 + s;
            }
        }
        counted += r.flush().iter().map(|(_, n)| n).sum::<u64>();
        assert_eq!(counted, 10_000);
        for k in 0..3u8 {
            let times: Vec<Duration> = lines.iter().filter(|l| l.0 == k).map(|l| l.1).collect();
            assert_eq!(times.len(), 10, "kind {k}: one line per 10 s over 95 s");
            assert!(times.windows(2).all(|w| w[1] - w[0] >= W));
        }
    }

    #[test]
    fn a_clock_going_backwards_never_logs_early() {
        let t0 = Duration::from_secs(100);
        let mut r = RateLimiter::new(W);
        assert_eq!(r.hit("a", t0), Some(0));
        assert_eq!(r.hit("a", t0 - Duration::from_secs(50)), None);
        assert_eq!(r.hit("a", t0 + W), Some(1));
    }

    #[test]
    fn kinds_past_the_bound_are_always_logged() {
        let t0 = Duration::ZERO;
        let mut r = RateLimiter::new(W);
        for k in 0..64u32 {
            assert_eq!(r.hit(k, t0), Some(0));
        }
        assert_eq!(r.hit(1000u32, t0), Some(0));
        assert_eq!(r.hit(1000u32, t0), Some(0));
        assert_eq!(r.hit(5u32, t0), None);
    }
}
