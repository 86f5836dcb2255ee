//! When to try a failed delivery again, and when to give up.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Jitter adds at most this fraction of the delay (never subtracts: a retry never fires early).
const MAX_JITTER: f64 = 0.2;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before retry n (n from 0); the last repeats.
    pub schedule: Vec<Duration>,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// No attempt is scheduled later than this after the event was created.
    pub window: Duration,
}

impl RetryPolicy {
    /// A policy from constant seconds (finite, non-negative).
    pub fn from_secs(schedule_secs: &[f64], max_attempts: u32, window_secs: f64) -> Self {
        let seconds = |s: f64| Duration::try_from_secs_f64(s).unwrap_or_default();
        Self {
            schedule: schedule_secs.iter().map(|s| seconds(*s)).collect(),
            max_attempts,
            window: seconds(window_secs),
        }
    }

    /// After `attempts` failed attempts, when to try again; `None`: the delivery is dead.
    /// `jitter` is in 0..1 (random in production, fixed in tests); `retry_after` is what the
    /// receiver asked for on 429 or 503, already capped.
    pub fn next_attempt(
        &self,
        attempts: u32,
        created_at: DateTime<Utc>,
        now: DateTime<Utc>,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        if attempts >= self.max_attempts {
            return None;
        }
        let step = (attempts.max(1) - 1) as usize;
        let base = self.schedule.get(step).or(self.schedule.last()).copied().unwrap_or_default();
        let jittered = base.mul_f64(1.0 + MAX_JITTER * jitter.clamp(0.0, 1.0));
        let delay = retry_after.map_or(jittered, |asked| asked.max(jittered));
        let at = now + chrono::Duration::from_std(delay).ok()?;
        let deadline = created_at + chrono::Duration::from_std(self.window).ok()?;
        (at <= deadline).then_some(at)
    }
}

/// A random number in 0..1 for jitter.
pub fn random_jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn follows_the_schedule_and_gives_up_after_the_attempts() {
        let policy = RetryPolicy::from_secs(&[1.0, 10.0, 100.0], 4, 10_000.0);
        assert_eq!(policy.next_attempt(1, at(0), at(0), None, 0.0), Some(at(1)));
        assert_eq!(policy.next_attempt(2, at(0), at(1), None, 0.0), Some(at(11)));
        assert_eq!(policy.next_attempt(3, at(0), at(11), None, 0.0), Some(at(111)));
        assert_eq!(policy.next_attempt(4, at(0), at(111), None, 0.0), None);
    }

    #[test]
    fn the_last_step_repeats_and_the_window_bounds_everything() {
        let policy = RetryPolicy::from_secs(&[60.0], 100, 150.0);
        assert_eq!(policy.next_attempt(5, at(0), at(60), None, 0.0), Some(at(120)));
        assert_eq!(policy.next_attempt(6, at(0), at(120), None, 0.0), None, "180 s is past the 150 s window");
    }

    #[test]
    fn jitter_only_ever_delays() {
        let policy = RetryPolicy::from_secs(&[100.0], 2, 10_000.0);
        for i in 0..=100 {
            let jitter = f64::from(i) / 100.0;
            let next = policy.next_attempt(1, at(0), at(0), None, jitter).unwrap();
            assert!(next >= at(100) && next <= at(120), "{jitter}: {next}");
        }
        for _ in 0..1000 {
            let j = random_jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }

    #[test]
    fn retry_after_is_honoured_when_longer_than_the_backoff() {
        let policy = RetryPolicy::from_secs(&[5.0], 2, 10_000.0);
        assert_eq!(policy.next_attempt(1, at(0), at(0), Some(Duration::from_secs(30)), 0.0), Some(at(30)));
        assert_eq!(policy.next_attempt(1, at(0), at(0), Some(Duration::from_secs(1)), 0.0), Some(at(5)));
    }

    #[test]
    fn the_default_schedule_fits_its_window() {
        let schedule = crate::config::DEFAULT_RETRY_SCHEDULE_SECS;
        let policy = RetryPolicy::from_secs(&schedule, schedule.len() as u32 + 1, 28.0 * 3600.0);
        let mut now = at(0);
        let mut attempts = 1;
        while let Some(next) = policy.next_attempt(attempts, at(0), now, None, 0.0) {
            now = next;
            attempts += 1;
        }
        assert_eq!(attempts, 8, "the first attempt and seven retries");
    }
}
