//! `steward`: parses the command line, sets up logging and hands over to the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use steward::cli::{AdminCommand, Cli, Command};
use steward::clock::{ClockHandle, SystemClock};
use steward::config::{DatabaseUrl, Settings};
use steward::db::Db;
use steward::http::Application;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    steward::telemetry::init(std::env::var("STEWARD_LOG_FORMAT").is_ok_and(|f| f == "json"));
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let clock: ClockHandle = Arc::new(SystemClock);
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings {
                listen: args.listen,
                database_url: DatabaseUrl::parse(&args.database_url).map_err(anyhow::Error::msg)?,
                request_timeout_ms: args.request_timeout_ms,
                body_limit_bytes: args.body_limit_bytes,
                header_read_timeout_ms: args.header_read_timeout_ms,
                keep_alive_timeout_ms: args.keep_alive_timeout_ms,
                shutdown_grace_ms: args.shutdown_grace_ms,
                metrics_listen: args.metrics_listen,
                auth_cache_entries: args.auth_cache_entries,
                trusted_proxies: args.trusted_proxies,
                payments: args
                    .payments
                    .config(args.payment_tasks_interval_ms)
                    .map_err(anyhow::Error::msg)?,
            };
            let app = Application::build(&settings, clock).await?;
            app.run_until(shutdown_signal()).await
        }
        Command::Admin(args) => {
            // copy-database reads from `--from` when given.
            let source = match &args.command {
                AdminCommand::CopyDatabase {
                    from: Some(from), ..
                } => from,
                _ => &args.database_url,
            };
            let url = DatabaseUrl::parse(source).map_err(anyhow::Error::msg)?;
            let db = Db::connect(&url).await?;
            steward::upgrade::run(&db, &clock).await?;
            let payments = args.payments.config(0).map_err(anyhow::Error::msg)?;
            let result = steward::admin::run(&db, &clock, &payments, args.command).await;
            db.close().await;
            println!("{}", serde_json::to_string_pretty(&result?)?);
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("Shutting down: finishing requests in flight");
}
