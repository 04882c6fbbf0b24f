//! Back-off for restarting crashed containers and for failed image pulls: upstream's
//! flowcontrol.Backoff. The first retry waits `initial`, each next one twice as long up
//! to `max`; an entry unused for twice `max` starts over (so a container that ran for 10
//! minutes with a 5-minute cap is back to 10 s).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// Back-off entries by key (pod uid + container name, or image).
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// kubelet's crash loop back-off: 10 s doubling to 300 s.
    pub fn crash_loop() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(300))
    }

    /// kubelet's image pull back-off: 10 s doubling to 300 s.
    pub fn image_pull() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(300))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a retry at `now` after an event (an exit, a failed pull) at `event`: the
    /// wait before the next one grows, or starts over when the event came more than twice
    /// the cap after the last retry (the container ran that long).
    pub fn next(&self, key: &str, event: Instant, now: Instant) {
        let mut m = self.lock();
        let e = m.entry(key.to_string()).or_insert(Entry {
            backoff: Duration::ZERO,
            last_update: now,
        });
        if e.backoff.is_zero() || event.saturating_duration_since(e.last_update) > 2 * self.max {
            e.backoff = self.initial;
        } else {
            e.backoff = (e.backoff * 2).min(self.max);
        }
        e.last_update = now;
    }

    /// The wait left at `now` when the last event (a container's exit, a failed pull)
    /// happened at `since`: None when a retry may go now.
    pub fn remaining(&self, key: &str, since: Instant, now: Instant) -> Option<Duration> {
        let m = self.lock();
        let e = m.get(key)?;
        if now.saturating_duration_since(e.last_update) > 2 * self.max {
            return None;
        }
        let until = since + e.backoff;
        (now < until).then(|| until - now)
    }

    /// The wait left at `now` since the last retry was recorded (image pulls).
    pub fn remaining_since_update(&self, key: &str, now: Instant) -> Option<Duration> {
        let m = self.lock();
        let e = m.get(key)?;
        let until = e.last_update + e.backoff;
        (now < until).then(|| until - now)
    }

    /// The current wait of a key (for messages: "back-off 20s restarting ...").
    pub fn current(&self, key: &str) -> Duration {
        self.lock().get(key).map_or(self.initial, |e| e.backoff)
    }

    /// Forgets a key (the pod is gone).
    pub fn forget_prefix(&self, prefix: &str) {
        self.lock().retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_starts_over_after_twice_the_cap() {
        let b = Backoff::crash_loop();
        let t0 = Instant::now();
        b.next("k", t0, t0);
        assert_eq!(b.current("k"), Duration::from_secs(10));
        assert_eq!(
            b.remaining("k", t0, t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(b.remaining("k", t0, t0 + Duration::from_secs(10)), None);
        let mut t = t0;
        for want in [20, 40, 80, 160, 300, 300] {
            t += Duration::from_secs(1);
            b.next("k", t, t);
            assert_eq!(b.current("k"), Duration::from_secs(want));
        }
        let later = t + Duration::from_secs(601);
        b.next("k", later, later);
        assert_eq!(b.current("k"), Duration::from_secs(10));
        b.forget_prefix("k");
        assert_eq!(b.remaining("k", later, later), None);
    }
}
