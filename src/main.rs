//! The `tandem` binary: parse the CLI, set up tracing, run.

use std::collections::HashMap;

use clap::Parser;
use tandem::auth::{Auth, load_or_create_secret};
use tandem::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Some(Command::Serve(c)) => c.log_format,
        Some(Command::Token(_) | Command::Sync(_)) => Default::default(),
        None => cli.serve.log_format,
    };
    tandem::telemetry::init_tracing(log_format);
    match cli.command {
        Some(Command::Token(t)) => {
            let secret = load_or_create_secret(t.secret.secret.as_deref(), &t.secret.data_dir)?;
            let sessions: HashMap<_, _> = t.sessions.into_iter().collect();
            println!(
                "{}",
                Auth::new(&secret).issue(&t.user, &t.name, sessions, t.ttl_secs)
            );
            Ok(())
        }
        Some(Command::Sync(args)) => tandem::sync::run(args, shutdown_signal()).await,
        Some(Command::Serve(config)) => serve(config).await,
        None => serve(cli.serve).await,
    }
}

async fn serve(config: tandem::config::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
    tandem::server::run(listener, config, shutdown_signal()).await
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
}
