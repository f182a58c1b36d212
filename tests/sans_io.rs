//! docs/DESIGN.md §2: `proto/`, `session/`, `lease/`, `authority/`, `requestor/`, `lwb4/` and
//! `store/record.rs` (and `cluster/contract.rs`, issue 18) are sans-io. This test reads their sources and fails on anything that does I/O, reads a clock or awaits.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "glommio",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "SystemTime",
    "Instant::now",
    ".await",
    "async fn",
    "std::fs",
    "tokio",
];

/// Scans a folder of sources (recursively) or one source file; a path that does not exist is
/// an error (a module renamed must not drop out of the check unnoticed).
fn scan(path: &Path, hits: &mut Vec<String>, files: &mut usize) {
    assert!(
        path.exists(),
        "{} is gone: update the sans-io list",
        path.display()
    );
    let entries: Vec<std::path::PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    for p in entries {
        if p.is_dir() {
            scan(&p, hits, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            *files += 1;
            let text = std::fs::read_to_string(&p).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for f in FORBIDDEN {
                    if code.contains(f) {
                        hits.push(format!("{}:{}: {f}: {}", p.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
}

#[test]
fn sans_io_modules_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut hits = Vec::new();
    let mut files = 0;
    for m in [
        "proto",
        "session",
        "lease",
        "authority",
        "requestor",
        "lwb4",
        "store/record.rs",
        "ratelimit.rs",
        "cluster/contract.rs",
    ] {
        scan(&root.join(m), &mut hits, &mut files);
    }
    assert!(
        files >= 5,
        "expected the sans-io sources, found {files} files"
    );
    assert!(
        hits.is_empty(),
        "I/O in sans-io modules:\n{}",
        hits.join("\n")
    );
}

#[test]
fn the_checker_catches_a_violation() {
    let dir = std::env::temp_dir().join(format!("sansio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad.rs"),
        "fn f() { let t = std::time::SystemTime::now(); }\n",
    )
    .unwrap();
    let mut hits = Vec::new();
    let mut files = 0;
    scan(&dir, &mut hits, &mut files);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(files, 1);
    assert_eq!(hits.len(), 1, "{hits:?}");
}

/// The session's imports do not reach glommio through the configuration: `session/` reads its
/// own `Policy`, not `config`, and `config.rs` does not import `store` (glommio DMA) or `shard`.
#[test]
fn session_and_config_do_not_import_the_shell() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut hits = Vec::new();
    let mut files = Vec::new();
    collect(&root.join("session"), &mut files);
    for p in &files {
        let text = std::fs::read_to_string(p).unwrap();
        for f in [
            "crate::config",
            "crate::store",
            "crate::shard",
            "crate::feed",
        ] {
            if text
                .lines()
                .any(|l| l.split("//").next().unwrap_or("").contains(f))
            {
                hits.push(format!("{}: {f}", p.display()));
            }
        }
    }
    let config = std::fs::read_to_string(root.join("config.rs")).unwrap();
    for f in ["crate::store", "crate::shard", "glommio"] {
        if config
            .lines()
            .any(|l| l.split("//").next().unwrap_or("").contains(f))
        {
            hits.push(format!("src/config.rs: {f}"));
        }
    }
    assert!(
        files.len() >= 5,
        "expected the session sources, found {}",
        files.len()
    );
    assert!(hits.is_empty(), "shell imports:\n{}", hits.join("\n"));
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}
