//! The `plugboard` binary: parse the command line, start logging, hand over
//! to [`plugboard::cli::run`].

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = plugboard::cli::Cli::parse();
    // The host's own log goes to stderr; plugin output is captured per
    // invocation and never mixed in here. A server logs each request (info);
    // one-shot commands only warnings, so their output stays readable.
    let default = match cli.command {
        plugboard::cli::Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_env("PLUGBOARD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("PLUGBOARD_LOG_FORMAT").as_deref() == Ok("json") {
        logs.json().init();
    } else {
        logs.init();
    }
    plugboard::cli::run(cli)
}
