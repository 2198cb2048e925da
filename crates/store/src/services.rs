//! Seed 003's inference services: a deployment of one repository model with its
//! resources. The row is the source of truth for what should run; status moves
//! by conditional updates, so a stop that races a finishing deploy is not lost.

use rusqlite::{params, params_from_iter, OptionalExtension, Row};

use crate::{now, Store, StoreError, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceStatus {
    Creating,
    Running,
    Failed,
    Stopping,
    Stopped,
}

impl ServiceStatus {
    pub const ALL: [ServiceStatus; 5] = [
        ServiceStatus::Creating,
        ServiceStatus::Running,
        ServiceStatus::Failed,
        ServiceStatus::Stopping,
        ServiceStatus::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Creating => "creating",
            ServiceStatus::Running => "running",
            ServiceStatus::Failed => "failed",
            ServiceStatus::Stopping => "stopping",
            ServiceStatus::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<ServiceStatus> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    pub id: String,
    pub name: String,
    pub description: String,
    pub workspace_id: Option<i64>,
    pub model: String,
    pub model_version: u64,
    pub framework: String,
    pub cpu: f64,
    pub memory: u64,
    pub gpu: u32,
    pub replicas: u32,
    pub status: ServiceStatus,
    /// Why the service failed, when it did.
    pub reason: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    /// The fields the client sent whose resolved value differs in type or
    /// text (a JSON object such as `{"cpu": 4, "model_version": "v1.0"}`),
    /// so answers echo what was sent.
    pub sent: Option<String>,
}

/// List filters; `None` matches every service.
#[derive(Debug, Clone, Default)]
pub struct ServiceFilter {
    pub status: Option<ServiceStatus>,
    pub workspace_id: Option<i64>,
    /// Services whose name contains this text.
    pub name: Option<String>,
}

const COLUMNS: &str = "id, name, description, workspace_id, model, model_version, framework, \
     cpu, memory, gpu, replicas, status, reason, created_at, updated_at, sent";

fn record(r: &Row<'_>) -> rusqlite::Result<(ServiceRecord, String)> {
    Ok((
        ServiceRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            workspace_id: r.get(3)?,
            model: r.get(4)?,
            model_version: r.get::<_, i64>(5)? as u64,
            framework: r.get(6)?,
            cpu: r.get(7)?,
            memory: r.get::<_, i64>(8)? as u64,
            gpu: r.get(9)?,
            replicas: r.get(10)?,
            status: ServiceStatus::Creating,
            reason: r.get(12)?,
            created_at: r.get(13)?,
            updated_at: r.get(14)?,
            sent: r.get(15)?,
        },
        r.get(11)?,
    ))
}

fn finish((mut rec, status): (ServiceRecord, String)) -> StoreResult<ServiceRecord> {
    rec.status = ServiceStatus::parse(&status).ok_or(StoreError::UnknownStatus(status))?;
    Ok(rec)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// Memory held by services with (or getting) instances, other than `?1`.
const RESERVED: &str = "(SELECT COALESCE(SUM(memory), 0) FROM services
     WHERE id != ?1 AND status IN ('creating', 'running', 'stopping'))";

// Admission: the memory check and the write are one statement, so two
// concurrent requests cannot both take the last room.

/// What `insert_service` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Another service has the name (names are unique).
    NameTaken,
    /// Services already hold `reserved` bytes; this one would pass the ceiling.
    NoRoom {
        reserved: u64,
    },
}

/// What `start_service` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Started,
    Unknown,
    /// It is in a state it cannot be started from.
    InState(ServiceStatus),
    /// Other services hold `reserved` bytes; this one would pass the ceiling.
    NoRoom {
        reserved: u64,
    },
}

impl Store {
    /// Saves a new service if its memory fits under `ceiling` with what other
    /// services hold.
    pub fn insert_service(&self, s: &ServiceRecord, ceiling: u64) -> StoreResult<Admission> {
        let conn = self.lock();
        let res = conn.execute(
            &format!(
                "INSERT INTO services ({COLUMNS})
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?17
                 WHERE ?9 + {RESERVED} <= ?16"
            ),
            params![
                s.id,
                s.name,
                s.description,
                s.workspace_id,
                s.model,
                s.model_version as i64,
                s.framework,
                s.cpu,
                s.memory as i64,
                s.gpu,
                s.replicas,
                s.status.as_str(),
                s.reason,
                s.created_at,
                s.updated_at,
                ceiling.min(i64::MAX as u64) as i64,
                s.sent
            ],
        );
        match res {
            Ok(1) => Ok(Admission::Admitted),
            Ok(_) => Ok(Admission::NoRoom {
                reserved: reserved(&conn, &s.id)?,
            }),
            Err(e) if is_unique_violation(&e) => Ok(Admission::NameTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a stopped or failed service back to `creating` if its memory
    /// fits under `ceiling` with what other services hold.
    pub fn start_service(&self, id: &str, ceiling: u64) -> StoreResult<Restart> {
        let conn = self.lock();
        let n = conn.execute(
            &format!(
                "UPDATE services SET status = 'creating', reason = NULL, updated_at = ?2
                 WHERE id = ?1 AND status IN ('stopped', 'failed')
                   AND memory + {RESERVED} <= ?3"
            ),
            params![id, now(), ceiling.min(i64::MAX as u64) as i64],
        )?;
        if n == 1 {
            return Ok(Restart::Started);
        }
        let status: Option<String> = conn
            .query_row("SELECT status FROM services WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(status) = status else {
            return Ok(Restart::Unknown);
        };
        let status = ServiceStatus::parse(&status).ok_or(StoreError::UnknownStatus(status))?;
        Ok(match status {
            ServiceStatus::Stopped | ServiceStatus::Failed => Restart::NoRoom {
                reserved: reserved(&conn, id)?,
            },
            other => Restart::InState(other),
        })
    }

    pub fn service(&self, id: &str) -> StoreResult<Option<ServiceRecord>> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM services WHERE id = ?1"))?;
        let mut rows = stmt.query_map([id], record)?;
        rows.next().transpose()?.map(finish).transpose()
    }

    /// One page (1-based) of the services matching `filter`, oldest first, and
    /// how many match in all.
    pub fn list_services(
        &self,
        filter: &ServiceFilter,
        page: u64,
        page_size: u64,
    ) -> StoreResult<(Vec<ServiceRecord>, u64)> {
        let mut clauses = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(st) = filter.status {
            clauses.push("status = ?");
            values.push(st.as_str().to_string().into());
        }
        if let Some(ws) = filter.workspace_id {
            clauses.push("workspace_id = ?");
            values.push(ws.into());
        }
        if let Some(name) = &filter.name {
            clauses.push("instr(name, ?) > 0");
            values.push(name.clone().into());
        }
        let filter_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let conn = self.lock();
        let total: i64 = conn.query_row(
            &format!("SELECT COUNT(*) FROM services{filter_sql}"),
            params_from_iter(values.iter()),
            |r| r.get(0),
        )?;
        let offset = page.saturating_sub(1).saturating_mul(page_size);
        values.push((page_size.min(i64::MAX as u64) as i64).into());
        values.push((offset.min(i64::MAX as u64) as i64).into());
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM services{filter_sql} ORDER BY created_at, id LIMIT ? OFFSET ?"
        ))?;
        let rows = stmt
            .query_map(params_from_iter(values.iter()), record)?
            .map(|r| finish(r?))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total as u64))
    }

    /// Moves a service to `to` if it is in one of `from`; false otherwise.
    pub fn set_service_status(
        &self,
        id: &str,
        from: &[ServiceStatus],
        to: ServiceStatus,
        reason: Option<&str>,
    ) -> StoreResult<bool> {
        let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let n = self.lock().execute(
            "UPDATE services SET status = ?2, reason = ?3, updated_at = ?4
             WHERE id = ?1 AND status IN (SELECT value FROM json_each(?5))",
            params![
                id,
                to.as_str(),
                reason,
                now(),
                format!("[\"{}\"]", allowed.join("\",\""))
            ],
        )?;
        Ok(n == 1)
    }

    pub fn delete_service(&self, id: &str) -> StoreResult<bool> {
        Ok(self
            .lock()
            .execute("DELETE FROM services WHERE id = ?1", [id])?
            == 1)
    }

    /// How many services are in each status now (statuses with none are left out).
    pub fn service_counts(&self) -> StoreResult<Vec<(String, u64)>> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM services GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// This store's own name, made once: what the kubernetes orchestrator
    /// labels its InferenceServices with, so it never takes another inferd's
    /// (a second store in the same namespace) for its own orphans.
    pub fn instance_id(&self) -> StoreResult<String> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?1)",
            [uuid::Uuid::new_v4().simple().to_string()[..16].to_string()],
        )?;
        Ok(conn.query_row(
            "SELECT value FROM meta WHERE key = 'instance_id'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Services that should be running after a restart. A stop that the
    /// restart interrupted is finished first: nothing of it runs any more, and
    /// left `stopping` it could be neither started nor stopped again.
    pub fn services_to_restore(&self) -> StoreResult<Vec<ServiceRecord>> {
        let conn = self.lock();
        conn.execute(
            "UPDATE services SET status = 'stopped', updated_at = ?1 WHERE status = 'stopping'",
            [now()],
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM services WHERE status IN ('creating', 'running') ORDER BY created_at"
        ))?;
        let rows = stmt.query_map([], record)?;
        rows.map(|r| finish(r?)).collect()
    }
}

fn reserved(conn: &rusqlite::Connection, except: &str) -> StoreResult<u64> {
    let sum: i64 = conn.query_row(&format!("SELECT {RESERVED}"), [except], |r| r.get(0))?;
    Ok(sum.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_store;

    fn svc(id: &str, name: &str, ws: i64) -> ServiceRecord {
        ServiceRecord {
            id: id.into(),
            name: name.into(),
            description: String::new(),
            workspace_id: Some(ws),
            model: "digits".into(),
            model_version: 1,
            framework: "onnx".into(),
            cpu: 1.0,
            memory: 1 << 20,
            gpu: 0,
            replicas: 1,
            status: ServiceStatus::Creating,
            reason: None,
            created_at: now(),
            updated_at: now(),
            sent: Some(r#"{"cpu": 1}"#.into()),
        }
    }

    #[test]
    fn names_are_unique_pages_and_filters_apply() {
        let (store, dir) = temp_store("services");
        for i in 0..45 {
            let mut s = svc(&format!("svc-{i:03}"), &format!("svc {i}"), i % 2);
            s.created_at = i as f64;
            assert_eq!(
                store.insert_service(&s, u64::MAX).unwrap(),
                Admission::Admitted
            );
        }
        assert_eq!(
            store
                .insert_service(&svc("svc-x", "svc 3", 0), u64::MAX)
                .unwrap(),
            Admission::NameTaken
        );
        let (page, total) = store
            .list_services(&ServiceFilter::default(), 3, 20)
            .unwrap();
        assert_eq!((page.len(), total), (5, 45));
        assert_eq!(page[0].id, "svc-040");
        let odd = ServiceFilter {
            workspace_id: Some(1),
            ..Default::default()
        };
        assert_eq!(store.list_services(&odd, 1, 100).unwrap().1, 22);
        let named = ServiceFilter {
            name: Some("svc 4".into()),
            ..Default::default()
        };
        // "svc 4" and "svc 40" to "svc 44".
        assert_eq!(store.list_services(&named, 1, 100).unwrap().1, 6);
        assert!(store
            .set_service_status(
                "svc-001",
                &[ServiceStatus::Creating],
                ServiceStatus::Running,
                None
            )
            .unwrap());
        assert!(!store
            .set_service_status(
                "svc-001",
                &[ServiceStatus::Creating],
                ServiceStatus::Failed,
                Some("x")
            )
            .unwrap());
        let running = ServiceFilter {
            status: Some(ServiceStatus::Running),
            ..Default::default()
        };
        assert_eq!(store.list_services(&running, 1, 20).unwrap().1, 1);
        assert_eq!(store.services_to_restore().unwrap().len(), 45);
        assert!(store.delete_service("svc-001").unwrap());
        assert!(store.service("svc-001").unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn memory_is_admitted_under_the_ceiling_on_create_and_start() {
        let (store, dir) = temp_store("services-room");
        let ceiling = 3 << 20;
        for i in 0..3 {
            let s = svc(&format!("svc-{i}"), &format!("s{i}"), 0);
            assert_eq!(
                store.insert_service(&s, ceiling).unwrap(),
                Admission::Admitted
            );
        }
        assert_eq!(
            store
                .insert_service(&svc("svc-3", "s3", 0), ceiling)
                .unwrap(),
            Admission::NoRoom { reserved: 3 << 20 }
        );
        assert!(store.service("svc-3").unwrap().is_none());
        let stop = |id: &str| {
            store
                .set_service_status(id, &[ServiceStatus::Creating], ServiceStatus::Stopped, None)
                .unwrap()
        };
        assert!(stop("svc-0"));
        assert_eq!(
            store.start_service("svc-1", ceiling).unwrap(),
            Restart::InState(ServiceStatus::Creating)
        );
        assert_eq!(
            store.start_service("svc-9", ceiling).unwrap(),
            Restart::Unknown
        );
        assert_eq!(
            store
                .insert_service(&svc("svc-3", "s3", 0), ceiling)
                .unwrap(),
            Admission::Admitted
        );
        // svc-3 took the room svc-0 left: svc-0 cannot start again.
        assert_eq!(
            store.start_service("svc-0", ceiling).unwrap(),
            Restart::NoRoom { reserved: 3 << 20 }
        );
        assert!(stop("svc-3"));
        assert_eq!(
            store.start_service("svc-0", ceiling).unwrap(),
            Restart::Started
        );
        assert_eq!(
            store.service("svc-0").unwrap().unwrap().status,
            ServiceStatus::Creating
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_stop_cut_short_by_a_restart_ends_stopped() {
        let (store, dir) = temp_store("services-stopping");
        for id in ["svc-run", "svc-halt"] {
            store.insert_service(&svc(id, id, 0), u64::MAX).unwrap();
        }
        let to = |id, status| {
            store
                .set_service_status(id, &[ServiceStatus::Creating], status, None)
                .unwrap()
        };
        assert!(to("svc-run", ServiceStatus::Running));
        assert!(to("svc-halt", ServiceStatus::Stopping));
        let back: Vec<String> = store
            .services_to_restore()
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(back, ["svc-run"]);
        let halted = store.service("svc-halt").unwrap().unwrap();
        assert_eq!(halted.status, ServiceStatus::Stopped);
        let _ = std::fs::remove_dir_all(dir);
    }
}
