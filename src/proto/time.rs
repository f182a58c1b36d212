//! Leasequery absolute times and lifetimes.
//!
//! DHCPv6 leasequery (OPTION_LQ_BASE_TIME, _START_TIME, _END_TIME; RFC 7653 §2, §6.3) counts
//! seconds since 2000-01-01 00:00 UTC, modulo 2^32. DHCPv4 leasequery (options 152, 154, 155;
//! RFC 6926 §6.2, RFC 7724) counts seconds since 1970-01-01 00:00 UTC. Inside the server
//! times are Unix seconds.

/// 2000-01-01 00:00:00 UTC in Unix seconds: the DHCPv6 leasequery epoch.
pub const V6_EPOCH_UNIX: u64 = 946_684_800;

/// Unix seconds to a DHCPv6 leasequery time (seconds since 2000, modulo 2^32). Times before
/// 2000 map to 0.
pub fn unix_to_v6(unix: u64) -> u32 {
    // Truncation is the "modulo 2^32" of RFC 7653 §2.
    unix.saturating_sub(V6_EPOCH_UNIX) as u32
}

/// A DHCPv6 leasequery time to Unix seconds, taking the value as counted from 2000 (the first
/// 2^32-second era, which ends in 2136).
pub fn v6_to_unix(v6: u32) -> u64 {
    V6_EPOCH_UNIX + u64::from(v6)
}

/// Unix seconds to a DHCPv4 leasequery time (seconds since 1970), saturating at `u32::MAX`.
pub fn unix_to_v4(unix: u64) -> u32 {
    u32::try_from(unix).unwrap_or(u32::MAX)
}

/// Lifetime left at `now` of something that ends at `until` (both in the same clock). The
/// infinite lifetime `u32::MAX` (RFC 8415 §7.7) stays infinite; an end in the past gives 0.
pub fn remaining(until: u32, now: u32) -> u32 {
    if until == u32::MAX {
        u32::MAX
    } else {
        until.saturating_sub(now)
    }
}

/// Seconds elapsed at `now` since `then` (CLT_TIME, RFC 5007 §4.1.2.4; DHCPv4 option 91).
/// A `then` in the future gives 0.
pub fn ago(then: u32, now: u32) -> u32 {
    now.saturating_sub(then)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_2000_01_01() {
        // 30 years of 365 days plus 7 leap days (1972..=1996).
        assert_eq!(V6_EPOCH_UNIX, (30 * 365 + 7) * 86_400);
        assert_eq!(unix_to_v6(V6_EPOCH_UNIX), 0);
        assert_eq!(unix_to_v6(V6_EPOCH_UNIX - 1), 0);
    }

    #[test]
    fn known_dates() {
        // 2024-01-01 00:00:00 UTC = 1_704_067_200 Unix; 8766 days after 2000-01-01.
        assert_eq!(unix_to_v6(1_704_067_200), 757_382_400);
        assert_eq!(757_382_400, 8766 * 86_400);
        assert_eq!(v6_to_unix(757_382_400), 1_704_067_200);
        assert_eq!(unix_to_v4(1_704_067_200), 1_704_067_200);
        // 2106-02-07 06:28:16 UTC is 2^32 Unix: past v4 range, saturates.
        assert_eq!(unix_to_v4(1 << 32), u32::MAX);
        // Modulo 2^32 for v6: 2^32 seconds after 2000 wraps to 0.
        assert_eq!(unix_to_v6(V6_EPOCH_UNIX + (1 << 32) + 5), 5);
        assert_eq!(v6_to_unix(u32::MAX), V6_EPOCH_UNIX + 4_294_967_295);
    }

    #[test]
    fn remaining_and_ago() {
        assert_eq!(remaining(1_000, 400), 600);
        assert_eq!(remaining(1_000, 1_000), 0);
        assert_eq!(remaining(1_000, 2_000), 0);
        assert_eq!(remaining(u32::MAX, 2_000), u32::MAX);
        assert_eq!(ago(400, 1_000), 600);
        assert_eq!(ago(1_000, 400), 0);
        assert_eq!(ago(7, 7), 0);
    }
}
