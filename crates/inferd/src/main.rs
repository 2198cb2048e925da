//! The inferd binary: parses settings, builds the manager over the repository
//! with every backend of this build, serves the faces, and drains on SIGINT or
//! SIGTERM (stop accepting, finish in-flight requests, exit 0).

mod admin;
mod config;
mod kserve;
mod orchestrator;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use inferd_core::{Backend, Manager};
use inferd_http::AppState;
use inferd_store::Store;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "inferd",
    version,
    about = "One fast binary that serves models in the APIs their users already speak."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the models of a repository over HTTP.
    Serve(Box<config::ServeArgs>),
    /// Make, list and revoke API keys.
    #[command(subcommand)]
    Keys(admin::Keys),
    /// Make ZStack login accounts.
    #[command(subcommand)]
    Accounts(admin::Accounts),
}

/// mimalloc rather than glibc's malloc: per-request allocations (bodies,
/// tensors, JSON) are many and small, and glibc's arenas cost ~15 % of a V2
/// request's CPU at 30k requests/s on two cores.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn backends(onnxruntime_lib: &Path) -> Vec<Arc<dyn Backend>> {
    vec![
        Arc::new(inferd_backend_onnx::OnnxBackend),
        Arc::new(inferd_backend_builtin::BuiltinBackend),
        Arc::new(inferd_backend_embed::EmbedBackend),
        Arc::new(inferd_backend_embed::OnnxRuntimeBackend {
            library: onnxruntime_lib.to_path_buf(),
        }),
        Arc::new(inferd_backend_llm::LlamaCppBackend),
        Arc::new(inferd_backend_remote::RemoteBackend::tgi()),
        Arc::new(inferd_backend_remote::RemoteBackend::openai()),
        Arc::new(inferd_backend_remote::RemoteBackend::ollama()),
    ]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("INFERD_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match Cli::parse().command {
        Command::Serve(args) => *args,
        Command::Keys(cmd) => return admin::keys(cmd),
        Command::Accounts(cmd) => return admin::accounts(cmd),
    };
    let settings = args.resolve()?;
    let store = Store::open(&settings.data_dir)
        .with_context(|| format!("opening the data directory {}", settings.data_dir.display()))?;
    match inferd_store::read_catalog_file(&settings.catalog) {
        Ok(entries) => match store.seed_catalog(&entries) {
            Ok(0) => {}
            Ok(n) => tracing::info!("model-service catalog seeded with {n} recipes"),
            Err(e) => tracing::warn!("cannot seed the model-service catalog: {e}"),
        },
        Err(e) => tracing::warn!("no model-service catalog to seed from: {e}"),
    }
    let may_run_open = inferd_auth::may_run_open(settings.host, settings.insecure);
    let credentials = store.credentials_made()?;
    if credentials == 0 && !may_run_open {
        anyhow::bail!(
            "refusing to serve on {} with no API key: anyone who can reach it could use and manage every model. \
             Create a key first (`inferd keys create --role admin --data-dir {}`) and send it as \
             'Authorization: Bearer <key>', or pass --insecure to serve without credentials",
            settings.host,
            settings.data_dir.display()
        );
    }
    if credentials > 0 {
        tracing::info!("credentials required on every route but the health probes ({credentials} keys and accounts made)");
    } else if settings.host.is_loopback() {
        tracing::info!(
            "no API key or account yet: open to local clients (`inferd keys create` closes it)"
        );
    } else {
        tracing::warn!(
            "INSECURE: serving on {} with no credentials (--insecure); anyone who can reach this port can use and manage every model",
            settings.host
        );
    }

    let models = match &settings.kserve {
        Some((name, dir)) => kserve::repository(name, dir, &settings.data_dir)?,
        None => settings.models.clone(),
    };
    let manager = Manager::new(
        &models,
        backends(&settings.onnxruntime_lib),
        settings.manager,
    );
    if settings.load_at_startup {
        manager.load_all().await;
    }
    let auth = Arc::new(inferd_auth::Auth::new(store.clone(), may_run_open));
    let mut state = AppState::new(manager.clone(), settings.compat, settings.max_body_bytes)
        .with_store(store.clone())
        .with_service_limits(settings.services)
        .with_auth(auth.clone());
    state.session_ttl = settings.session_ttl;
    state.zstack_webhook_hosts = settings.zstack_webhook_hosts.clone();
    state.ws = settings.ws;
    let reconcile_every;
    (state.services, reconcile_every) =
        orchestrator::attach(state.services.clone(), &settings.orchestrator, &store).await?;
    let state = inferd_http::start_jobs(state, store, settings.jobs).await?;
    match state.services.restore().await {
        Ok(0) => {}
        Ok(n) => tracing::info!("deploying {n} inference services again"),
        Err(e) => tracing::warn!("cannot restore inference services: {}", e.message),
    }
    if let Some(every) = reconcile_every {
        state.services.spawn_reconciler(every);
    }
    state.start_sampling();
    let (draining, drain_delay) = (state.draining.clone(), settings.drain_delay);
    let app = inferd_http::router(state);
    let addr = SocketAddr::new(settings.host, settings.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let grpc_addr = SocketAddr::new(settings.host, settings.grpc_port);
    let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("binding {grpc_addr} for gRPC (--grpc-port picks another)"))?;
    tracing::info!("inferd listening on http://{}", listener.local_addr()?);
    tracing::info!(
        "inferd gRPC (KServe V2) listening on {}",
        grpc_listener.local_addr()?
    );
    // One signal stops both faces; each then finishes its calls in flight.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        if !drain_delay.is_zero() {
            tracing::info!(
                "readiness is 503; still accepting for {} ms (--drain-delay-ms)",
                drain_delay.as_millis()
            );
            tokio::time::sleep(drain_delay).await;
        }
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|&s| s).await;
    };
    let face = inferd_grpc::face(manager.clone(), Some(auth), settings.max_body_bytes);
    let limits = settings.connections;
    let grpc_limits = inferd_grpc::GrpcLimits {
        max_connections: limits.max_connections,
        first_bytes_timeout: limits.header_read_timeout,
        max_header_bytes: u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX),
    };
    let grpc = inferd_grpc::serve(
        grpc_listener,
        face,
        grpc_limits,
        until_stopped(stopped.clone()),
    );
    let http = inferd_http::serve(listener, app, limits, until_stopped(stopped));
    let ((), grpc) = tokio::join!(http, grpc);
    grpc.context("serving gRPC")?;
    tracing::info!("draining model queues");
    tokio::task::spawn_blocking(move || manager.shutdown()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
