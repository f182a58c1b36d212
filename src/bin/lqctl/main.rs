//! lqctl (temporary entry point of the watch branch; replaced by the lqctl branch's CLI).

mod snabb;
mod watch;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lqctl", about = "A leasequery client")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Follow the servers' bindings and emit every change.
    Watch(watch::WatchArgs),
}

fn main() -> std::process::ExitCode {
    match Cli::parse().cmd {
        Cmd::Watch(a) => watch::run(&a),
    }
}
