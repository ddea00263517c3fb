//! Per-user rate limit of session creates: a token bucket per user, reported in
//! `X-RateLimit-*` headers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};

/// Buckets untouched this long are dropped, so idle users cost nothing.
const FORGET_AFTER: Duration = Duration::from_secs(600);

pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The outcome of one attempt, with what the headers report.
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the next create would be allowed.
    pub retry_after: u64,
}

impl RateLimiter {
    /// `per_minute == 0` disables the limit.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, user: &str) -> Option<Decision> {
        if self.per_minute == 0 {
            return None;
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now.duration_since(b.updated) < FORGET_AFTER);
        }
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let retry_after = if bucket.tokens >= 1.0 {
            0
        } else {
            ((1.0 - bucket.tokens) / per_second).ceil() as u64
        };
        Some(Decision {
            allowed,
            limit: self.per_minute,
            remaining: bucket.tokens.floor() as u32,
            retry_after,
        })
    }
}

impl Decision {
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.retry_after));
        if !self.allowed {
            headers.insert("retry-after", HeaderValue::from(self.retry_after.max(1)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_limit_then_refuses_per_user() {
        let limiter = RateLimiter::new(3);
        for left in [2, 1, 0] {
            let d = limiter.check("alice").expect("limited");
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let refused = limiter.check("alice").expect("limited");
        assert!(!refused.allowed);
        assert!(refused.retry_after >= 1 && refused.retry_after <= 20);
        assert!(limiter.check("bob").expect("limited").allowed);
        assert!(RateLimiter::new(0).check("alice").is_none());
    }
}
