//! The service layer: what has a life cycle longer than one request, under the
//! faces that drive it, so that every face (and a second orchestrator later)
//! runs the same code.
//!
//! - `services`: seed 003's inference services (deploy, stop, start, delete,
//!   restore after a restart), which the services API and the ZStack catalog
//!   both create;
//! - `jobs`: the durable async job queue, which runs each job through the
//!   face that accepted it;
//! - `orchestrator`: where a service's instances run (this process, or a
//!   cluster through `inferd-kube`);
//! - `results`: the results of accepted changes, kept for polling (ZStack's
//!   api-jobs).

pub mod jobs;
pub mod orchestrator;
mod results;
mod services;

pub use jobs::{JobConfig, JobError, JobOutcome, JobRunner, Jobs};
pub use orchestrator::{Later, Local, Observed, Orchestrator, Phase, Progress, Refusal};
pub use results::{Finished, ResultError, Results};
pub use services::{NewService, ServiceError, ServiceLimits, Services};
