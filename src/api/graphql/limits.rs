//! Per-client request rate limits for the GraphQL API: a token bucket per client, in this
//! replica's memory (a request must not wait for Redis to be refused). A signed-in caller is
//! counted by user (many drivers share one carrier address), anyone else by client address.

use std::time::Instant;

use dashmap::DashMap;

use super::auth::{Caller, ClientAddr};

/// Buckets kept before idle ones are swept.
const SWEEP_ABOVE: usize = 50_000;

/// The bucket key of a request.
pub fn client_key(caller: &Caller, client: &ClientAddr) -> String {
    match caller {
        Caller::User(claims) => format!("user:{}", claims.sub),
        _ => format!("addr:{}", client.0),
    }
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets: `burst` requests at once, refilled at `per_sec`.
pub struct RequestLimiter {
    per_sec: f64,
    burst: f64,
    buckets: DashMap<String, Bucket>,
}

impl RequestLimiter {
    /// `per_sec` below one request an hour (or not a number) counts as one an hour (settings
    /// refuse a rate of 0 or less).
    pub fn new(per_sec: f64, burst: u32) -> Self {
        const SLOWEST: f64 = 1.0 / 3600.0;
        Self {
            per_sec: if per_sec >= SLOWEST { per_sec } else { SLOWEST },
            burst: f64::from(burst.max(1)),
            buckets: DashMap::new(),
        }
    }

    /// Takes one request from `key`'s bucket, or says in how many seconds one is available.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.buckets.len() > SWEEP_ABOVE {
            self.sweep(now);
        }
        let mut bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let tokens = (bucket.tokens + elapsed * self.per_sec).min(self.burst);
        bucket.at = now;
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            // at least one second, as Retry-After counts whole seconds
            Err(((1.0 - tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }

    /// Forgets buckets that have refilled completely (they are indistinguishable from new ones).
    fn sweep(&self, now: Instant) {
        let full_after = self.burst / self.per_sec;
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at).as_secs_f64() < full_after);
    }
}

/// Open subscription sockets per key (`addr:<ip>`, `user:<id>`), in this replica.
#[derive(Default)]
pub struct SocketCounts {
    counts: DashMap<String, usize>,
}

/// One counted socket; dropping it uncounts it.
pub struct SocketGuard {
    counts: std::sync::Arc<SocketCounts>,
    key: String,
}

impl SocketCounts {
    /// Counts one more socket for `key`, or `None` when it already has `max`.
    pub fn acquire(self: &std::sync::Arc<Self>, key: String, max: usize) -> Option<SocketGuard> {
        let mut count = self.counts.entry(key.clone()).or_insert(0);
        if *count >= max {
            let empty = *count == 0;
            drop(count);
            if empty {
                self.counts.remove_if(&key, |_, n| *n == 0);
            }
            return None;
        }
        *count += 1;
        Some(SocketGuard {
            counts: self.clone(),
            key,
        })
    }

    /// Sockets counted for `key`.
    pub fn count(&self, key: &str) -> usize {
        self.counts.get(key).map_or(0, |n| *n)
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Some(mut count) = self.counts.counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
        }
        self.counts.counts.remove_if(&self.key, |_, n| *n == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_allowed_then_requests_are_refused_until_the_bucket_refills() {
        let limiter = RequestLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take_at("a", t0), Ok(()));
        }
        assert_eq!(limiter.take_at("a", t0), Err(1));
        // another client has its own bucket
        assert_eq!(limiter.take_at("b", t0), Ok(()));
        // half a second at 2/s is one request
        assert_eq!(
            limiter.take_at("a", t0 + Duration::from_millis(500)),
            Ok(())
        );
        assert_eq!(
            limiter.take_at("a", t0 + Duration::from_millis(500)),
            Err(1)
        );
    }

    #[test]
    fn a_fractional_rate_refills_slower_than_one_a_second_and_says_when() {
        let limiter = RequestLimiter::new(0.25, 1);
        let t0 = Instant::now();
        assert_eq!(limiter.take_at("a", t0), Ok(()));
        assert_eq!(limiter.take_at("a", t0), Err(4));
        assert_eq!(limiter.take_at("a", t0 + Duration::from_secs(3)), Err(1));
        assert_eq!(limiter.take_at("a", t0 + Duration::from_secs(4)), Ok(()));
        // no rate at all is the slowest one, not a division by zero
        let stopped = RequestLimiter::new(0.0, 1);
        assert_eq!(stopped.take_at("a", t0), Ok(()));
        assert_eq!(stopped.take_at("a", t0), Err(3600));
    }

    #[test]
    fn sockets_are_counted_per_key_up_to_the_cap_and_uncounted_when_they_close() {
        let counts = std::sync::Arc::new(SocketCounts::default());
        let a = counts.acquire("addr:1".into(), 2);
        let b = counts.acquire("addr:1".into(), 2);
        assert!(a.is_some() && b.is_some());
        assert!(counts.acquire("addr:1".into(), 2).is_none());
        assert!(counts.acquire("addr:2".into(), 2).is_some());
        drop(a);
        assert_eq!(counts.count("addr:1"), 1);
        assert!(counts.acquire("addr:1".into(), 2).is_some());
        drop(b);
        assert_eq!(counts.count("addr:2"), 0);
        assert!(counts.counts.is_empty());
    }

    #[test]
    fn idle_buckets_are_swept_and_busy_ones_kept() {
        let limiter = RequestLimiter::new(10.0, 10);
        let t0 = Instant::now();
        for i in 0..=SWEEP_ABOVE {
            let _ = limiter.take_at(&format!("k{i}"), t0);
        }
        let _ = limiter.take_at("busy", t0 + Duration::from_millis(900));
        limiter.sweep(t0 + Duration::from_millis(1500));
        assert_eq!(limiter.buckets.len(), 1);
        assert!(limiter.buckets.contains_key("busy"));
    }
}
