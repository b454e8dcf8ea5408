//! The one retry loop: a [`Backoff`] policy and [`retry`], which runs an
//! operation again while its error is retryable. Each caller states its own
//! policy (the engine's transactions, the Cloud Run client, the worker's
//! report); the loop exists only here.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How often and how patiently to try again: up to `retries` more tries
/// after the first, waiting `base`, `2 * base`, `4 * base`… (at most `max`)
/// before each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Tries after the first; `0` tries once.
    pub retries: u32,
    /// The wait before the first retry, doubled before each next one.
    pub base: Duration,
    /// The longest wait between two tries.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(retries: u32, base: Duration, max: Duration) -> Self {
        Backoff { retries, base, max }
    }

    /// As many retries as it takes for the waits between them to add up
    /// to `budget`: a policy stated as "keep trying for 15 minutes".
    pub fn within(budget: Duration, base: Duration, max: Duration) -> Self {
        let mut policy = Backoff::new(0, base, max);
        let mut waited = Duration::ZERO;
        while waited < budget && policy.retries < 100_000 && !base.is_zero() {
            waited += policy.delay(policy.retries);
            policy.retries += 1;
        }
        policy
    }

    /// The wait before retry `n` (0-based): `base * 2^n`, at most `max`.
    pub fn delay(&self, n: u32) -> Duration {
        self.base.saturating_mul(1 << n.min(16)).min(self.max)
    }
}

/// Runs `op` until it succeeds, fails with an error `is_retryable` refuses,
/// or `policy.retries` retries are spent; the last result is returned.
pub async fn retry<T, E, Fut>(
    policy: Backoff,
    is_retryable: impl Fn(&E) -> bool,
    mut op: impl FnMut() -> Fut,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let mut retries = 0;
    loop {
        match op().await {
            Err(e) if retries < policy.retries && is_retryable(&e) => {
                let delay = policy.delay(retries);
                retries += 1;
                tracing::debug!(error = %e, retries, delay_ms = delay.as_millis() as u64, "retrying");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn within_a_budget_waits_add_up_to_it() {
        use super::Backoff;
        use std::time::Duration;
        let s = Duration::from_secs;
        let p = Backoff::within(s(15 * 60), Duration::from_millis(500), s(30));
        let total: Duration = (0..p.retries).map(|n| p.delay(n)).sum();
        assert!(total >= s(15 * 60) && total < s(15 * 60 + 30), "{total:?}");
        assert_eq!(Backoff::within(Duration::ZERO, s(1), s(1)).retries, 0);
    }

    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff::new(4, Duration::from_millis(200), Duration::from_secs(1));
        assert_eq!(b.delay(0), Duration::from_millis(200));
        assert_eq!(b.delay(2), Duration::from_millis(800));
        assert_eq!(b.delay(3), Duration::from_secs(1));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn retries_only_what_is_retryable_and_only_so_often() {
        let policy = Backoff::new(2, Duration::from_millis(1), Duration::from_millis(1));
        let calls = AtomicU32::new(0);
        let always = retry(
            policy,
            |_: &String| true,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>("no".to_owned())
            },
        )
        .await;
        assert!(always.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let never = retry(
            policy,
            |_: &String| false,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>("no".to_owned())
            },
        )
        .await;
        assert!(never.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        calls.store(0, Ordering::SeqCst);
        let second = retry(
            policy,
            |_: &String| true,
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err("once".to_owned()),
                    n => Ok(n),
                }
            },
        )
        .await;
        assert_eq!(second, Ok(1));
    }
}
