//! Peer tools a test needs (tests/peers.rs, lqctl.rs, packaging.rs, metrics.rs): whether one is
//! there, and the rule for a missing one: the test fails when `LQD_REQUIRE_PEERS` is set (CI:
//! `.ci/run` installs every tool), and otherwise says loudly that it checked nothing.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// True when `tool` is on PATH (`command -v`).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when every tool of `list` is on PATH; see [`present`] for a missing one.
pub fn tools(test: &str, list: &[&str]) -> bool {
    let missing: Vec<&str> = list.iter().copied().filter(|t| !have(t)).collect();
    present(test, &missing)
}

/// True when nothing is `missing`; otherwise panics under `LQD_REQUIRE_PEERS` (not empty, not
/// "0"), or writes `SKIPPED TEST: peer tools missing: [...]` and returns false. The line goes
/// to the stderr handle itself: libtest captures `eprintln!` and shows it only for a failing
/// test, so the skip would read as a plain `ok`.
pub fn present(test: &str, missing: &[&str]) -> bool {
    if missing.is_empty() {
        return true;
    }
    if std::env::var("LQD_REQUIRE_PEERS").is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("peer tools missing: {missing:?} (bash .ci/run installs them)");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED {test}: peer tools missing: {missing:?} (the test reports ok but checked \
         nothing; bash .ci/run installs them, LQD_REQUIRE_PEERS=1 makes a missing tool fail)"
    );
    false
}
