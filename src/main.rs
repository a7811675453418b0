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
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
    tandem::server::run(listener, config, shutdown).await
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives while
/// the agent or server is still starting up (before its main loop polls the
/// future) must stop it cleanly rather than kill it with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            let (Ok(mut int), Ok(mut term)) = (int, term) else {
                return std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
