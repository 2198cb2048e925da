//! The server-wide budget for request data in flight. Every request's decoded
//! size is charged to it while the request lives; a request that would pass it
//! is answered "overloaded, retry" at once instead of letting concurrent large
//! requests together exhaust memory. Charges are plain accounting: nothing is
//! allocated from what a request claims.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{CoreError, CoreResult};

/// How much memory a request's data may take beyond its own bytes while it is
/// decoded and run: JSON numbers become typed leaves, then a tensor, then an
/// answer. A measured estimate, not a bound (see `FlatData`).
pub const DECODE_FACTOR: u64 = 4;

#[derive(Clone, Debug)]
pub struct InflightBudget {
    inner: Arc<Counter>,
}

#[derive(Debug)]
struct Counter {
    limit: u64,
    used: AtomicU64,
    /// Requests being answered, every face together: the load an autoscaler
    /// reads from `/metrics`.
    requests: AtomicU64,
}

/// One request being answered, counted until dropped.
#[derive(Debug)]
pub struct Entered(Arc<Counter>);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's share of the budget, given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Counter>,
    bytes: u64,
}

impl InflightBudget {
    pub fn new(limit: u64) -> InflightBudget {
        InflightBudget {
            inner: Arc::new(Counter {
                limit,
                used: AtomicU64::new(0),
                requests: AtomicU64::new(0),
            }),
        }
    }

    /// A quarter of physical memory, at least 256 MiB: room for the models
    /// and the rest of the process beside the requests.
    pub fn default_limit() -> u64 {
        const MIN: u64 = 256 << 20;
        physical_memory()
            .map(|total| (total / 4).max(MIN))
            .unwrap_or(4 << 30)
    }

    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn enter(&self) -> Entered {
        self.inner.requests.fetch_add(1, Ordering::AcqRel);
        Entered(self.inner.clone())
    }

    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, or says why not.
    pub fn try_charge(&self, bytes: u64) -> CoreResult<Charge> {
        let mut charge = Charge {
            budget: self.inner.clone(),
            bytes: 0,
        };
        charge.grow(bytes)?;
        Ok(charge)
    }
}

impl Charge {
    /// Adds `bytes` to this charge (a body whose size was not known up front).
    pub fn grow(&mut self, bytes: u64) -> CoreResult<()> {
        let counter = &self.budget;
        counter
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= counter.limit)
            })
            .map_err(|used| CoreError::Overloaded {
                needed: self.bytes.saturating_add(bytes),
                used,
                limit: counter.limit,
            })?;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The machine's physical memory (Linux `MemTotal`), where it can be read.
pub fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_flight_are_counted_until_their_guard_drops() {
        let budget = InflightBudget::new(100);
        let a = budget.enter();
        let b = budget.clone().enter();
        assert_eq!(budget.requests(), 2);
        drop(a);
        assert_eq!(budget.requests(), 1);
        drop(b);
        assert_eq!(budget.requests(), 0);
    }

    #[test]
    fn charges_are_refused_past_the_limit_and_returned_on_drop() {
        let budget = InflightBudget::new(100);
        let a = budget.try_charge(60).unwrap();
        let err = budget.try_charge(50).unwrap_err();
        assert!(err.to_string().contains("in-flight memory budget"), "{err}");
        let mut b = budget.try_charge(40).unwrap();
        assert!(b.grow(1).is_err());
        assert_eq!(budget.used(), 100);
        drop(a);
        b.grow(10).unwrap();
        assert_eq!(budget.used(), 50);
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.try_charge(u64::MAX).is_err());
        assert!(InflightBudget::default_limit() >= 256 << 20);
    }
}
