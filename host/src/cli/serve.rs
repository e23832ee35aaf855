//! `plugboard serve`: the HTTP server on the embedded store.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::host::Host;
use crate::store::{Role, Store};

/// Arguments of `plugboard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default: expose it deliberately.
    #[arg(long, env = "PLUGBOARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Also start the demo API with a demo integration wired to it.
    #[arg(long)]
    pub demo: bool,
    /// The URL browsers reach this host at, for OAuth consent redirects
    /// (`<URL>/v1/oauth/callback`) [default: http://<listen address>].
    #[arg(long, env = "PLUGBOARD_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<url::Url>,
}

/// Runs the server until Ctrl-C or SIGTERM; requests in flight finish and
/// every run is stored before it exits.
pub async fn run(args: ServeArgs, mut config: Config) -> anyhow::Result<ExitCode> {
    let demo_addr = match args.demo {
        true => Some(crate::demo::add_demo_credential(&mut config).await?),
        false => None,
    };
    let host = Host::open(config)?.with_public_url(args.public_url.clone());
    first_admin_token(host.store())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    let addr = listener.local_addr()?;
    println!("plugboard listening on http://{addr}");
    let serving = host.start(listener).await?;
    if let Some(demo) = demo_addr {
        crate::demo::install_demo_integration(serving.integrations(), addr, &demo).await?;
    }
    serving.until(shutdown_signal()).await?;
    println!("plugboard stopped; every run is stored");
    Ok(ExitCode::SUCCESS)
}

/// On a store without an admin token, creates one and prints it once.
fn first_admin_token(store: &Store) -> anyhow::Result<()> {
    if store.count_active_admin_tokens()? > 0 {
        // Secrets are stored hashed: an earlier token cannot be shown again.
        println!(
            "admin tokens exist in this store; `plugboard tokens create NAME --role admin` makes another"
        );
        return Ok(());
    }
    let (_, secret) = store.create_token("admin", Role::Admin, None)?;
    println!("created the first admin token; it is shown only this once:\n\n    {secret}\n");
    println!("manage tokens with `plugboard tokens create|list|revoke`");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    println!("shutting down: finishing requests in flight");
}
