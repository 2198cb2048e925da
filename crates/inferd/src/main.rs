//! The inferd binary: parses settings, builds the manager over the repository
//! with every backend of this build, serves the faces, and drains on SIGINT or
//! SIGTERM (stop accepting, finish in-flight requests, exit 0).

mod config;

use std::net::SocketAddr;
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
    Serve(config::ServeArgs),
}

fn backends() -> Vec<Arc<dyn Backend>> {
    vec![
        Arc::new(inferd_backend_onnx::OnnxBackend),
        Arc::new(inferd_backend_builtin::BuiltinBackend),
        Arc::new(inferd_backend_embed::EmbedBackend),
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
    let Command::Serve(args) = Cli::parse().command;
    let settings = args.resolve()?;

    let manager = Manager::new(&settings.models, backends(), settings.manager);
    if settings.load_at_startup {
        manager.load_all().await;
    }
    let store = Store::open(&settings.data_dir)
        .with_context(|| format!("opening the data directory {}", settings.data_dir.display()))?;
    let state = AppState::new(manager.clone(), settings.compat, settings.max_body_bytes);
    let state = inferd_http::start_jobs(state, store, settings.jobs).await?;
    let app = inferd_http::router(state);
    let addr = SocketAddr::new(settings.host, settings.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!("inferd listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
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
