//! `leasequeryd`: reads the configuration, loads the import file, starts one pinned glommio
//! executor per shard and serves until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use leasequery::config::{Config, Flags, LogFormat};

/// Exit status after a panic anywhere in the process (EX_SOFTWARE, sysexits.h).
const EXIT_PANIC: i32 = 70;

/// A panic in any thread (a shard's executor, the main thread, a helper) ends the process at
/// once with [`EXIT_PANIC`]: a shard that died would otherwise leave a process that looks alive
/// and serves nothing on that shard. The supervisor (systemd `Restart=on-failure`) restarts it;
/// every acknowledged lease is in the journal (`--data-dir`), so nothing acknowledged is lost.
fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The standard report first (thread name, location, backtrace when asked for).
        default(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        if tracing::dispatcher::has_been_set() {
            tracing::error!(
                thread = name,
                "panic: {info}; exiting with status {EXIT_PANIC} (restart me)"
            );
        } else {
            eprintln!(
                "leasequeryd: panic in thread {name}: {info}; exiting with status {EXIT_PANIC}"
            );
        }
        std::process::exit(EXIT_PANIC);
    }));
}

/// `--check-config`: what the start checks besides [`Config::load`] (the files it reads),
/// then the effective configuration on stdout. Binds nothing, writes nothing.
fn check_config(config: &Config) -> ExitCode {
    match config.check_files() {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("leasequeryd: warning: {w}");
            }
        }
        Err(e) => {
            eprintln!("leasequeryd: {e}");
            return ExitCode::from(2);
        }
    }
    match config.effective_toml() {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("leasequeryd: cannot print the configuration: {e}");
            ExitCode::from(2)
        }
    }
}

/// Replaces the running log filter (SIGHUP).
type SetFilter = Box<dyn Fn(tracing_subscriber::EnvFilter) -> Result<(), String> + Send>;

/// Installs the global subscriber: stderr, `filter`, in `format` (`log_format`); returns what
/// replaces the filter later. Both formats keep the filter reloadable.
fn init_logging(filter: tracing_subscriber::EnvFilter, format: LogFormat) -> SetFilter {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let builder = builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
        LogFormat::Json => {
            // One JSON object per line: timestamp, level, target, fields (message included),
            // and the current span and span list when there are spans.
            let builder = builder.json().with_ansi(false).with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
    }
}

/// `leasequeryd --man-page DIR`: writes the man page generated from the clap definitions
/// (clap_mangen) to `DIR/leasequeryd.1` (dist/man/ holds this output; tests/packaging.rs keeps
/// them equal). Not a clap flag, so that it stays out of the page itself; the page names the
/// package version, not the commit, so that it changes only when the flags do.
fn write_man_page(dir: Option<std::ffi::OsString>) -> ExitCode {
    use clap::CommandFactory;
    let Some(dir) = dir else {
        eprintln!("leasequeryd: --man-page needs a directory");
        return ExitCode::from(2);
    };
    let cmd = Flags::command().version(env!("CARGO_PKG_VERSION"));
    match clap_mangen::generate_to(cmd, &dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasequeryd: cannot write the man page: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    exit_on_panic();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "--man-page")
    {
        return write_man_page(std::env::args_os().nth(2));
    }
    let flags = Flags::parse();
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("leasequeryd: {e}");
            return ExitCode::from(2);
        }
    };
    if flags.check_config {
        return check_config(&config);
    }
    // Config::load checked the filter.
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into());
    let format = config.log_format;
    let set_filter = init_logging(filter, format);
    // SIGHUP: the configuration again, from the same file and flags; the log filter is applied
    // here (in either format; the format itself takes effect at a restart), the allow-list by
    // the server.
    let reload: leasequery::shard::Reload = Box::new(move || {
        let new = Config::load(&flags).map_err(|e| e.to_string())?;
        let filter = tracing_subscriber::EnvFilter::try_new(&new.log).map_err(|e| e.to_string())?;
        set_filter(filter)?;
        if new.log_format != format {
            tracing::warn!(
                running = ?format,
                configured = ?new.log_format,
                "SIGHUP: log_format changes at a restart, not on reload"
            );
        }
        Ok(new)
    });
    for w in config.limit_warnings(leasequery::config::open_file_limit()) {
        tracing::warn!("{w}");
    }
    match leasequery::shard::run(config, Some(reload)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasequeryd: {e}");
            ExitCode::from(1)
        }
    }
}
