use super::*;
use crate::tensor::TensorData;

fn job(rows: usize, inner: usize, now: Instant) -> (Job, oneshot::Receiver<Reply>) {
    let (tx, rx) = oneshot::channel();
    let t = Tensor::new(
        "x",
        vec![rows, inner],
        TensorData::F32(vec![0.0; rows * inner]),
    )
    .unwrap();
    let job = Job {
        inputs: vec![t],
        rows,
        enqueued: now,
        deadline: now + Duration::from_secs(10),
        timeout: Duration::from_secs(10),
        reply: tx,
    };
    (job, rx)
}

#[test]
fn a_full_queue_refuses_at_once() {
    let now = Instant::now();
    let mut q = QueueState::new("m", 2, 0, Duration::ZERO);
    let mut keep = Vec::new();
    for _ in 0..2 {
        let (j, rx) = job(1, 4, now);
        keep.push(rx);
        q.push(j).unwrap();
    }
    let (j, _rx) = job(1, 4, now);
    assert!(matches!(
        q.push(j),
        Err(CoreError::QueueFull { max: 2, .. })
    ));
}

#[test]
fn batches_join_compatible_jobs_up_to_the_limit() {
    let now = Instant::now();
    let mut q = QueueState::new("m", 10, 4, Duration::from_millis(5));
    let mut keep = Vec::new();
    for (rows, inner) in [(1, 4), (2, 4), (1, 3), (1, 4)] {
        let (j, rx) = job(rows, inner, now);
        keep.push(rx);
        q.push(j).unwrap();
    }
    // The third job has another inner shape, so the batch stops before it
    // and runs at once rather than waiting for more.
    assert_eq!(q.next(now), Next::Run(2));
    assert_eq!(q.take(2).iter().map(|j| j.rows).sum::<usize>(), 3);
    assert_eq!(q.next(now), Next::Run(1));
    q.take(1);
    // Only one request was in flight last time: the next one runs at once.
    assert_eq!(q.next(now), Next::Run(1));
}

#[test]
fn a_batch_smaller_than_the_last_one_waits_at_most_the_delay() {
    let now = Instant::now();
    let mut q = QueueState::new("m", 10, 8, Duration::from_millis(5));
    let mut keep = Vec::new();
    for _ in 0..3 {
        let (j, rx) = job(1, 4, now);
        keep.push(rx);
        q.push(j).unwrap();
    }
    assert_eq!(q.next(now), Next::Run(3));
    q.take(3);
    let (j, rx) = job(1, 4, now);
    keep.push(rx);
    q.push(j).unwrap();
    assert_eq!(q.next(now), Next::WaitFor(Duration::from_millis(5)));
    assert_eq!(
        q.next(now + Duration::from_millis(2)),
        Next::WaitFor(Duration::from_millis(3))
    );
    assert_eq!(q.next(now + Duration::from_millis(5)), Next::Run(1));
}

#[test]
fn a_full_batch_runs_without_waiting() {
    let now = Instant::now();
    let mut q = QueueState::new("m", 10, 2, Duration::from_secs(1));
    let (a, _ra) = job(1, 4, now);
    let (b, _rb) = job(1, 4, now);
    q.push(a).unwrap();
    q.push(b).unwrap();
    assert_eq!(q.next(now), Next::Run(2));
}

#[test]
fn expired_jobs_get_a_timeout_and_abandoned_ones_are_dropped() {
    let now = Instant::now();
    let mut q = QueueState::new("m", 10, 0, Duration::ZERO);
    let (mut expired, mut expired_rx) = job(1, 4, now);
    expired.deadline = now;
    let (gone, gone_rx) = job(1, 4, now);
    drop(gone_rx);
    let (live, _live_rx) = job(1, 4, now);
    q.push(expired).unwrap();
    q.push(gone).unwrap();
    q.push(live).unwrap();
    assert_eq!(q.next(now), Next::Run(1));
    assert_eq!(q.len(), 1);
    assert!(matches!(
        expired_rx.try_recv(),
        Ok(Err(CoreError::DeadlineExceeded { .. }))
    ));
}

#[test]
fn inline_runs_only_with_a_free_slot_and_nothing_queued() {
    let now = Instant::now();
    let mut q = QueueState::new("m", 10, 0, Duration::ZERO).with_slots(1);
    assert!(q.claim_inline(1));
    // The slot is taken: a second caller queues, and no worker may run it.
    assert!(!q.claim_inline(1));
    let (j, _rx) = job(1, 4, now);
    q.push(j).unwrap();
    assert_eq!(q.next(now), Next::Idle);
    // The inline run ends: the starved worker is woken and runs the job.
    assert!(q.finished());
    assert_eq!(q.next(now), Next::Run(1));
    q.take(1);
    assert!(!q.claim_inline(1), "a worker holds the only slot");
    assert!(!q.finished());
    assert!(q.claim_inline(1));
}

#[test]
fn inline_runs_do_not_skip_a_batch_worth_waiting_for() {
    let now = Instant::now();
    let mut q = QueueState::new("m", 10, 8, Duration::from_millis(5));
    let mut keep = Vec::new();
    for _ in 0..4 {
        let (j, rx) = job(1, 4, now);
        keep.push(rx);
        q.push(j).unwrap();
    }
    assert_eq!(q.next(now), Next::Run(4));
    q.take(4);
    q.finished();
    // Four requests ran together last time: a lone one waits to join others.
    assert!(!q.claim_inline(1));
    assert!(q.claim_inline(4));
    q.finished();
    // That run held four; one now still waits, until a run of one is seen.
    assert!(!q.claim_inline(1));
}

/// Doubles its input; panics on a negative first value.
struct Double;

impl LoadedModel for Double {
    fn inputs(&self) -> &[crate::config::TensorSpec] {
        &[]
    }
    fn outputs(&self) -> &[crate::config::TensorSpec] {
        &[]
    }
    fn memory_bytes(&self) -> u64 {
        0
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, crate::backend::BackendError> {
        let TensorData::F32(v) = inputs[0].data() else {
            unreachable!("the test sends FP32")
        };
        assert!(v[0] >= 0.0, "negative input");
        let doubled = v.iter().map(|x| x * 2.0).collect();
        Ok(vec![Tensor::new(
            "y",
            inputs[0].shape().to_vec(),
            TensorData::F32(doubled),
        )
        .unwrap()])
    }
    fn runs_inline(&self) -> bool {
        true
    }
}

fn double_scheduler(inline_limit: Duration) -> Scheduler {
    let config = SchedulerConfig {
        max_queue: 4,
        max_batch: 0,
        max_delay: Duration::ZERO,
        instances: 1,
        inline_limit,
    };
    Scheduler::start("double", Arc::new(Double), config, Arc::default())
}

fn submit(s: &Scheduler, x: f32) -> (bool, Reply) {
    let input = Tensor::new("x", vec![1, 2], TensorData::F32(vec![x, 1.0])).unwrap();
    let far = Duration::from_secs(10);
    match s.submit(vec![input], 1, Instant::now() + far, far).unwrap() {
        Submitted::Ran(reply) => (true, reply),
        Submitted::Queued(rx) => (false, rx.blocking_recv().unwrap()),
    }
}

#[test]
fn a_cheap_model_runs_on_the_callers_thread_once_measured() {
    let s = double_scheduler(Duration::from_secs(1));
    let (inline, reply) = submit(&s, 3.0);
    assert!(!inline, "the first run measures the cost on a worker");
    assert_eq!(reply.unwrap()[0].data(), &TensorData::F32(vec![6.0, 2.0]));
    let (inline, reply) = submit(&s, 4.0);
    assert!(inline);
    assert_eq!(reply.unwrap()[0].data(), &TensorData::F32(vec![8.0, 2.0]));
    // A panic stays in its request, inline too, and frees the slot.
    let (inline, reply) = submit(&s, -1.0);
    assert!(inline);
    assert!(
        matches!(reply, Err(CoreError::Backend { reason, .. }) if reason.contains("negative input"))
    );
    assert!(submit(&s, 5.0).1.is_ok());
    s.join();
}

#[test]
fn a_zero_limit_or_a_costly_model_always_queues() {
    for limit in [Duration::ZERO, Duration::from_nanos(1)] {
        let s = double_scheduler(limit);
        for x in [1.0, 2.0, 3.0] {
            let (inline, reply) = submit(&s, x);
            assert!(!inline, "limit {limit:?}");
            assert!(reply.is_ok());
        }
        s.join();
    }
}

#[test]
fn closed_queue_drains_then_exits() {
    let now = Instant::now();
    let mut q = QueueState::new("m", 10, 0, Duration::ZERO);
    let (j, _rx) = job(1, 4, now);
    q.push(j).unwrap();
    q.close();
    let (j2, _rx2) = job(1, 4, now);
    assert!(q.push(j2).is_err());
    assert_eq!(q.next(now), Next::Run(1));
    q.take(1);
    assert_eq!(q.next(now), Next::Exit);
}
