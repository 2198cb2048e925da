//! Results of change requests that were answered "accepted" with a location
//! to poll (ZStack's api-jobs): kept for a while after they end, at most a
//! bounded number at once (the oldest go first), so that polling costs no
//! more memory than the limit however many changes are made.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One accepted change's end, as the face will answer a poll for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub success: bool,
    pub body: String,
}

/// Why a job id was refused.
#[derive(Debug, PartialEq)]
pub enum ResultError {
    /// A result is kept under that id already.
    Taken,
}

pub struct Results {
    retention: Duration,
    max: usize,
    inner: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_id: HashMap<String, (Finished, Instant)>,
    /// Ids oldest first, to expire and to evict past `max`.
    order: VecDeque<String>,
}

impl Results {
    pub fn new(retention: Duration, max: usize) -> Results {
        Results {
            retention,
            max: max.max(1),
            inner: Mutex::default(),
        }
    }

    /// Keeps `finished` under `id`.
    pub fn keep(&self, id: &str, finished: Finished) -> Result<(), ResultError> {
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.expire(&mut kept);
        if kept.by_id.contains_key(id) {
            return Err(ResultError::Taken);
        }
        while kept.order.len() >= self.max {
            if let Some(oldest) = kept.order.pop_front() {
                kept.by_id.remove(&oldest);
            }
        }
        kept.by_id
            .insert(id.to_string(), (finished, Instant::now()));
        kept.order.push_back(id.to_string());
        Ok(())
    }

    /// The result kept under `id`, unless it expired or was never kept.
    pub fn get(&self, id: &str) -> Option<Finished> {
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.expire(&mut kept);
        kept.by_id.get(id).map(|(f, _)| f.clone())
    }

    fn expire(&self, kept: &mut Kept) {
        while let Some(oldest) = kept.order.front() {
            let expired = kept
                .by_id
                .get(oldest)
                .is_none_or(|(_, at)| at.elapsed() >= self.retention);
            if !expired {
                return;
            }
            let oldest = kept.order.pop_front().unwrap_or_default();
            kept.by_id.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(body: &str) -> Finished {
        Finished {
            success: true,
            body: body.into(),
        }
    }

    #[test]
    fn results_are_kept_once_bounded_and_expire() {
        let results = Results::new(Duration::from_secs(60), 2);
        results.keep("a", done("1")).unwrap();
        assert_eq!(results.keep("a", done("2")), Err(ResultError::Taken));
        results.keep("b", done("2")).unwrap();
        results.keep("c", done("3")).unwrap();
        assert_eq!(results.get("a"), None, "the oldest went past the limit");
        assert_eq!(results.get("c"), Some(done("3")));
        let brief = Results::new(Duration::ZERO, 10);
        brief.keep("x", done("1")).unwrap();
        assert_eq!(brief.get("x"), None, "expired");
    }
}
