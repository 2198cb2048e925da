//! Async inference jobs: written before the client hears "accepted", moved
//! through their states by conditional updates (a cancelled job is never
//! started or finished), and recovered after a crash.

use rusqlite::{params, OptionalExtension, Row};

use crate::{now, Store, StoreError, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> StoreResult<JobStatus> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            other => return Err(StoreError::UnknownStatus(other.into())),
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// One job as stored. `request`, `result` and `error` are JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub request: String,
    pub status: JobStatus,
    pub result: Option<String>,
    pub error: Option<String>,
    pub attempts: u32,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
}

fn record(row: &Row<'_>) -> rusqlite::Result<(JobRecord, String)> {
    let status: String = row.get(2)?;
    Ok((
        JobRecord {
            id: row.get(0)?,
            request: row.get(1)?,
            status: JobStatus::Queued,
            result: row.get(3)?,
            error: row.get(4)?,
            attempts: row.get(5)?,
            created_at: row.get(6)?,
            started_at: row.get(7)?,
            finished_at: row.get(8)?,
        },
        status,
    ))
}

impl Store {
    /// How many jobs are in each state now (states with none are left out).
    pub fn job_counts(&self) -> StoreResult<Vec<(String, u64)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn insert_job(&self, id: &str, request: &str) -> StoreResult<()> {
        self.lock().execute(
            "INSERT INTO jobs (id, request, status, created_at) VALUES (?1, ?2, 'queued', ?3)",
            params![id, request, now()],
        )?;
        Ok(())
    }

    pub fn job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        let found = self
            .lock()
            .query_row(
                "SELECT id, request, status, result, error, attempts, created_at, started_at, finished_at
                 FROM jobs WHERE id = ?1",
                params![id],
                record,
            )
            .optional()?;
        found
            .map(|(mut job, status)| {
                job.status = JobStatus::parse(&status)?;
                Ok(job)
            })
            .transpose()
    }

    /// Queued → running; false when the job is no longer queued (cancelled).
    pub fn start_job(&self, id: &str) -> StoreResult<bool> {
        let changed = self.lock().execute(
            "UPDATE jobs SET status = 'running', started_at = ?2, attempts = attempts + 1
             WHERE id = ?1 AND status = 'queued'",
            params![id, now()],
        )?;
        Ok(changed == 1)
    }

    /// Running → succeeded or failed; a job cancelled meanwhile stays cancelled.
    pub fn finish_job(&self, id: &str, outcome: Result<&str, &str>) -> StoreResult<bool> {
        let (status, result, error) = match outcome {
            Ok(r) => ("succeeded", Some(r), None),
            Err(e) => ("failed", None, Some(e)),
        };
        let changed = self.lock().execute(
            "UPDATE jobs SET status = ?2, result = ?3, error = ?4, finished_at = ?5
             WHERE id = ?1 AND status = 'running'",
            params![id, status, result, error, now()],
        )?;
        Ok(changed == 1)
    }

    /// Queued or running → cancelled. Returns the status the job has after the
    /// call, or `None` for an unknown id.
    pub fn cancel_job(&self, id: &str) -> StoreResult<Option<JobStatus>> {
        self.lock().execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?2
             WHERE id = ?1 AND status IN ('queued', 'running')",
            params![id, now()],
        )?;
        Ok(self.job(id)?.map(|j| j.status))
    }

    /// After a restart: jobs that were running are queued again, or failed with
    /// the reason once they have been started `max_attempts` times (a job that
    /// crashes the server must not crash it forever). Returns every queued job's
    /// id, oldest first.
    pub fn recover_jobs(&self, max_attempts: u32) -> StoreResult<Vec<String>> {
        let conn = self.lock();
        conn.execute(
            "UPDATE jobs SET status = 'failed', finished_at = ?2,
                 error = '{\"type\":\"InterruptedError\",\"code\":\"INFERENCE_FAILED\",\"message\":\"the server stopped while this job ran, ' || attempts || ' times; it is not retried again\"}'
             WHERE status = 'running' AND attempts >= ?1",
            params![max_attempts, now()],
        )?;
        conn.execute(
            "UPDATE jobs SET status = 'queued' WHERE status = 'running'",
            [],
        )?;
        let mut stmt =
            conn.prepare("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, id")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Deletes finished jobs older than `before` (seconds since the epoch).
    pub fn purge_jobs(&self, before: f64) -> StoreResult<usize> {
        Ok(self.lock().execute(
            "DELETE FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?1",
            params![before],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_store;

    #[test]
    fn a_job_moves_through_its_states_and_cancel_wins() {
        let (store, dir) = temp_store("states");
        store.insert_job("a", "{}").unwrap();
        assert_eq!(store.job("a").unwrap().unwrap().status, JobStatus::Queued);
        assert!(store.start_job("a").unwrap());
        assert!(!store.start_job("a").unwrap(), "started once");
        assert!(store.finish_job("a", Ok("{\"x\":1}")).unwrap());
        let a = store.job("a").unwrap().unwrap();
        assert_eq!(
            (a.status, a.result.as_deref(), a.attempts),
            (JobStatus::Succeeded, Some("{\"x\":1}"), 1)
        );

        store.insert_job("b", "{}").unwrap();
        assert_eq!(store.cancel_job("b").unwrap(), Some(JobStatus::Cancelled));
        assert!(
            !store.start_job("b").unwrap(),
            "a cancelled job never starts"
        );
        store.insert_job("c", "{}").unwrap();
        store.start_job("c").unwrap();
        store.cancel_job("c").unwrap();
        assert!(!store.finish_job("c", Err("late")).unwrap());
        assert_eq!(
            store.job("c").unwrap().unwrap().status,
            JobStatus::Cancelled
        );
        assert_eq!(store.cancel_job("nope").unwrap(), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn jobs_survive_reopening_and_running_ones_are_requeued_or_failed() {
        let (store, dir) = temp_store("recover");
        for id in ["1", "2", "3"] {
            store.insert_job(id, "{}").unwrap();
        }
        store.start_job("1").unwrap();
        store.start_job("2").unwrap();
        drop(store);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.recover_jobs(2).unwrap(), vec!["1", "2", "3"]);
        store.start_job("1").unwrap();
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.recover_jobs(2).unwrap(), vec!["2", "3"]);
        let one = store.job("1").unwrap().unwrap();
        assert_eq!(one.status, JobStatus::Failed);
        assert!(one.error.unwrap().contains("2 times"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn purge_removes_only_old_finished_jobs() {
        let (store, dir) = temp_store("purge");
        store.insert_job("done", "{}").unwrap();
        store.start_job("done").unwrap();
        store.finish_job("done", Ok("1")).unwrap();
        store.insert_job("waiting", "{}").unwrap();
        assert_eq!(store.purge_jobs(now() + 1.0).unwrap(), 1);
        assert!(store.job("done").unwrap().is_none());
        assert!(store.job("waiting").unwrap().is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
