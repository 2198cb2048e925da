//! Request latency by face, for `/metrics`: how long each face takes to
//! produce an answer's head (a stream's first bytes, not its end), by status
//! class. Labels come from the route table, never from the request, so their
//! values are bounded (a dozen faces, three classes).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use inferd_core::stats::{latency_bucket, LATENCY_BUCKETS};

use crate::routes::RouteTable;
use crate::Compat;

/// One histogram: requests per bucket (not cumulative, the last above every
/// bound), their total seconds and count.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn add(&mut self, took: Duration) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; LATENCY_BUCKETS.len() + 1];
        }
        self.buckets[latency_bucket(took)] += 1;
        self.sum += took.as_secs_f64();
        self.count += 1;
    }
}

/// Histograms by (face, status class).
#[derive(Debug, Default)]
pub struct FaceLatency(Mutex<BTreeMap<(&'static str, &'static str), Histogram>>);

impl FaceLatency {
    fn record(&self, face: &'static str, class: &'static str, took: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((face, class))
            .or_default()
            .add(took);
    }

    pub fn snapshot(&self) -> Vec<((&'static str, &'static str), Histogram)> {
        let cells = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cells.iter().map(|(k, h)| (*k, h.clone())).collect()
    }
}

/// The middleware's state: where to record, and how to tell a route's face.
#[derive(Clone)]
pub struct Timing {
    pub latency: Arc<FaceLatency>,
    pub table: Arc<RouteTable>,
    pub compat: Compat,
}

pub async fn time(State(t): State<Timing>, req: Request, next: Next) -> Response {
    let face = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| {
            t.table
                .access(req.method(), p.as_str())
                .1
                .owner(t.compat)
                .name()
        })
        .unwrap_or("none");
    let start = Instant::now();
    let res = next.run(req).await;
    let class = match res.status().as_u16() {
        500.. => "5xx",
        400..=499 => "4xx",
        _ => "2xx",
    };
    t.latency.record(face, class, start.elapsed());
    res
}
