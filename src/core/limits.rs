//! Size limits and the per-connection update budget (governor GCRA).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::error::{Error, ErrorCode};

/// Size limits applied to every update, whatever its source.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_update_bytes: usize,
    pub max_document_bytes: usize,
    /// Most nested shared types (a `Y.Map`, `Y.Array`, `Y.Text`, `Y.Xml*`
    /// inside another type) one document may ever hold. This bounds how
    /// deeply types can nest, and with it the recursion of yrs (see
    /// [`super::inspect`]); code documents need a root text and little else.
    pub max_nested_types: usize,
}

/// Default of [`Limits::max_nested_types`].
pub const DEFAULT_MAX_NESTED_TYPES: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_update_bytes: 1 << 20,
            max_document_bytes: 64 << 20,
            max_nested_types: DEFAULT_MAX_NESTED_TYPES,
        }
    }
}

impl Limits {
    pub fn check_update_size(&self, len: usize) -> Result<(), Error> {
        if len > self.max_update_bytes {
            return Err(Error::new(
                ErrorCode::UpdateTooLarge,
                format!(
                    "update of {len} bytes exceeds the limit of {} bytes",
                    self.max_update_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// A connection's update budget: `per_second` sustained, `burst` at once.
pub struct UpdateBudget {
    limiter: DefaultDirectRateLimiter,
}

impl UpdateBudget {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).expect("max(1) is non-zero");
        let burst = NonZeroU32::new(burst.max(1)).expect("max(1) is non-zero");
        Self {
            limiter: DefaultDirectRateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Takes one unit, or says how long until one is available.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_burst_then_refuses_with_a_wait() {
        let b = UpdateBudget::new(5, 3);
        for _ in 0..3 {
            b.check().unwrap();
        }
        let wait = b.check().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
    }

    #[test]
    fn size_limit() {
        let l = Limits {
            max_update_bytes: 10,
            max_document_bytes: 100,
            ..Limits::default()
        };
        assert!(l.check_update_size(10).is_ok());
        assert_eq!(
            l.check_update_size(11).unwrap_err().code,
            ErrorCode::UpdateTooLarge
        );
    }
}
