//! When a cached token is renewed (upstream token_manager.go requiresRefresh and
//! expired): when it is older than 24 hours, or when less than 20% of its life is left,
//! each minus a random jitter of up to 10 s so that many pods' tokens do not renew in the
//! same second. Plain time in, a decision out.

use std::time::{Duration, SystemTime};

/// Upstream's maxTTL: a token is renewed at the latest a day after it was issued.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Upstream's maxJitter.
pub const MAX_JITTER: Duration = Duration::from_secs(10);

/// Whether a token that expires at `expires`, issued for `expiration_seconds`, is
/// renewed at `now`.
pub fn requires_refresh(
    now: SystemTime,
    expires: SystemTime,
    expiration_seconds: i64,
    jitter: Duration,
) -> bool {
    let life = Duration::from_secs(u64::try_from(expiration_seconds).unwrap_or(0));
    let issued = expires.checked_sub(life).unwrap_or(SystemTime::UNIX_EPOCH);
    if now > (issued + MAX_TTL).checked_sub(jitter).unwrap_or(issued) {
        return true;
    }
    // Integer percent, as upstream computes it.
    let fifth = Duration::from_secs(u64::try_from(expiration_seconds * 20 / 100).unwrap_or(0));
    let refresh_at = expires
        .checked_sub(fifth + jitter)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    now > refresh_at
}

/// Whether the token can no longer be used at all.
pub fn expired(now: SystemTime, expires: SystemTime) -> bool {
    now > expires
}

/// A jitter in whole seconds below [`MAX_JITTER`], as upstream draws it.
pub fn jitter() -> Duration {
    let r = getrandom::u32().unwrap_or(0);
    Duration::from_secs(u64::from(r) % MAX_JITTER.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn an_hour_token_renews_after_eighty_percent_of_its_life() {
        let expires = at(T0 + 3600);
        let no = Duration::ZERO;
        assert!(!requires_refresh(at(T0), expires, 3600, no));
        assert!(!requires_refresh(at(T0 + 2880), expires, 3600, no));
        assert!(requires_refresh(at(T0 + 2881), expires, 3600, no));
    }

    #[test]
    fn the_jitter_renews_a_little_earlier() {
        let expires = at(T0 + 3600);
        let j = Duration::from_secs(9);
        assert!(!requires_refresh(at(T0 + 2871), expires, 3600, j));
        assert!(requires_refresh(at(T0 + 2872), expires, 3600, j));
    }

    #[test]
    fn a_long_token_renews_after_a_day() {
        let year = 365 * 24 * 3600;
        let expires = at(T0 + year);
        let day = 24 * 3600;
        assert!(!requires_refresh(
            at(T0 + day),
            expires,
            year as i64,
            Duration::ZERO
        ));
        assert!(requires_refresh(
            at(T0 + day + 1),
            expires,
            year as i64,
            Duration::ZERO
        ));
    }

    #[test]
    fn expiry_and_jitter_bounds() {
        assert!(!expired(at(T0), at(T0 + 1)));
        assert!(expired(at(T0 + 2), at(T0 + 1)));
        for _ in 0..20 {
            assert!(jitter() < MAX_JITTER);
        }
    }
}
