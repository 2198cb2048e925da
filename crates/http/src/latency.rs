//! Request latency by face, for `/metrics`: how long each face takes to
//! produce an answer's head (a stream's first bytes, not its end), by status
//! class. Labels come from the route table, never from the request, so their
//! values are bounded (a dozen faces, three classes), and every cell exists
//! from the start: a request only adds to atomics, with no lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::http::StatusCode;
use inferd_core::stats::{latency_bucket, LATENCY_BUCKETS};

use crate::routes::Face;

const CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

/// One histogram's counts: requests per bucket (not cumulative, the last
/// above every bound), their total seconds and count.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

#[derive(Debug, Default)]
struct Cell {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    ns: AtomicU64,
}

impl Cell {
    fn add(&self, took: Duration) {
        self.buckets[latency_bucket(took)].fetch_add(1, Relaxed);
        self.ns.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    fn get(&self) -> Histogram {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        Histogram {
            count: buckets.iter().sum(),
            buckets,
            sum: self.ns.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// Histograms by face (`Face::ALL`, then requests no route matched) and
/// status class.
#[derive(Debug, Default)]
pub struct FaceLatency([[Cell; CLASSES.len()]; Face::ALL.len() + 1]);

impl FaceLatency {
    pub fn record(&self, face: Option<Face>, status: StatusCode, took: Duration) {
        let class = match status.as_u16() {
            500.. => 2,
            400..=499 => 1,
            _ => 0,
        };
        let at = face.map_or(Face::ALL.len(), |f| f as usize);
        self.0[at][class].add(took);
    }

    /// The (face, class) cells that have seen a request.
    pub fn snapshot(&self) -> Vec<((&'static str, &'static str), Histogram)> {
        let names = Face::ALL.iter().map(|f| f.name()).chain(["none"]);
        names
            .zip(&self.0)
            .flat_map(|(face, row)| {
                CLASSES
                    .iter()
                    .zip(row)
                    .map(move |(class, cell)| ((face, *class), cell.get()))
            })
            .filter(|(_, h)| h.count > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_face_has_its_own_row() {
        for (i, face) in Face::ALL.iter().enumerate() {
            assert_eq!(*face as usize, i, "{face:?}");
        }
        let l = FaceLatency::default();
        l.record(Some(Face::V2), StatusCode::OK, Duration::from_millis(2));
        l.record(None, StatusCode::NOT_FOUND, Duration::from_millis(2));
        let seen: Vec<_> = l
            .snapshot()
            .into_iter()
            .map(|(k, h)| (k, h.count))
            .collect();
        assert_eq!(seen, [(("v2", "2xx"), 1), (("none", "4xx"), 1)]);
    }
}
