//! `leasequeryd`: reads the configuration, loads the import file, starts one pinned glommio
//! executor per shard and serves until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use leasequery::config::{Config, Flags};

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("leasequeryd: {e}");
            return ExitCode::from(2);
        }
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match leasequery::shard::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasequeryd: {e}");
            ExitCode::from(1)
        }
    }
}
