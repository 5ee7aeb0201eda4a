//! Retry waits with full jitter (exponential back-off, each wait drawn uniformly from
//! zero to the current ceiling), so that replicas that lost the same server at the same
//! moment do not come back to it in lock-step.

use std::time::Duration;

/// The waits between the attempts of one failing operation.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    /// The ceiling of the next wait.
    ceiling: Duration,
}

impl Backoff {
    /// Ceilings `first`, `2 × first`, `4 × first`, ... up to `cap` (and never below
    /// `first`'s own bound when `cap` is smaller).
    pub fn new(first: Duration, cap: Duration) -> Self {
        let first = first.min(cap);
        Backoff {
            first,
            cap,
            ceiling: first,
        }
    }

    /// The next wait: uniform in `[0, ceiling]`; the ceiling then doubles, up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.ceiling.mul_f64(unit());
        self.ceiling = (self.ceiling * 2).min(self.cap);
        wait
    }

    /// The operation worked: the next failure starts from the first ceiling again.
    pub fn reset(&mut self) {
        self.ceiling = self.first;
    }

    /// The ceiling of the next wait.
    #[cfg(test)]
    fn ceiling(&self) -> Duration {
        self.ceiling
    }
}

/// `d`, moved by a uniform draw of up to `± fraction` of itself.
pub fn spread(d: Duration, fraction: f64) -> Duration {
    d.mul_f64(1.0 - fraction + 2.0 * fraction * unit())
}

/// A uniform draw from `[0, 1]`, from the system's random source (a fixed midpoint if
/// that ever fails, which only loses the jitter).
fn unit() -> f64 {
    let mut bytes = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_be_bytes(bytes)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_start_over_after_a_success() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(backoff.ceiling().as_secs());
            let _ = backoff.next_wait();
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 10, 10]);
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
        // A cap below the first wait caps the first wait too.
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(2));
        assert_eq!(backoff.ceiling(), Duration::from_secs(2));
    }

    #[test]
    fn waits_are_spread_uniformly_below_the_ceiling() {
        // 20,000 replicas that failed together draw their first wait under a 1 s
        // ceiling: each tenth of the range gets its share (10 % ± 1.5 points; the
        // standard deviation of one bin is 0.2 points), and none waits past the
        // ceiling.
        const DRAWS: usize = 20_000;
        let mut bins = [0usize; 10];
        let mut total = 0.0;
        for _ in 0..DRAWS {
            let wait = Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).next_wait();
            assert!(wait <= Duration::from_secs(1), "{wait:?}");
            let at = wait.as_secs_f64();
            total += at;
            bins[((at * 10.0) as usize).min(9)] += 1;
        }
        for (i, &n) in bins.iter().enumerate() {
            let share = n as f64 / DRAWS as f64;
            assert!(
                (0.085..=0.115).contains(&share),
                "bin {i}: {share} of {bins:?}"
            );
        }
        let mean = total / DRAWS as f64;
        assert!((0.48..=0.52).contains(&mean), "mean {mean}");
    }

    #[test]
    fn a_spread_stays_within_its_fraction_and_covers_it() {
        let d = Duration::from_secs(300);
        let draws: Vec<Duration> = (0..2_000).map(|_| spread(d, 0.1)).collect();
        assert!(draws.iter().all(|x| (270..=330).contains(&x.as_secs())));
        // Both ends of the range are reached (each outer 5 % holds 1 in 4 draws).
        assert!(draws.iter().any(|x| x.as_secs() < 280));
        assert!(draws.iter().any(|x| x.as_secs() >= 320));
    }

    #[test]
    fn two_replicas_do_not_retry_in_lock_step() {
        // The schedules of two replicas differ at every step but the first few
        // microseconds' chance: over 8 attempts at most one pair of waits lies within
        // 1 ms of each other (probability of a pair at a 1 s+ ceiling: < 0.2 %).
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut b = a.clone();
        let close = (0..8)
            .filter(|_| {
                let (x, y) = (a.next_wait(), b.next_wait());
                x.abs_diff(y) < Duration::from_millis(1)
            })
            .count();
        assert!(close <= 1, "{close} of 8 waits matched");
    }
}
