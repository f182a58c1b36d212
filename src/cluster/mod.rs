//! Beyond one machine (issue 18): the lease-change stream on NATS JetStream.
//!
//! - [`contract`] (sans-io): subjects, the `Nats-Msg-Id` header, the payload and its version
//!   (README "Cluster contract").
//! - [`ClusterConfig`]: the `[cluster]` table.
//! - [`spool`] (blocking std I/O): reads the durable journal of each shard after the last
//!   change JetStream acknowledged; the journal is the publisher's spool.
//! - [`publisher`]: the publisher thread (its own current-thread tokio runtime, async-nats),
//!   woken by the shards' journals when a commit is durable; never on a shard's path.

pub mod contract;
pub mod publisher;
pub mod replica;
pub mod spool;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use publisher::{PublisherHandle, PublisherStats};

/// What this server is in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds its own leases (the authority, a `--feed` or `--import` server) and publishes
    /// every durable change.
    #[default]
    Authority,
    /// Serves what the stream holds (issue 18 part 2): no authority, no journal.
    Replica,
}

/// The `[cluster]` table (README "Cluster").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server URL(s), comma-separated (`nats://`, `tls://`).
    pub nats_url: String,
    /// The JetStream stream (created when missing).
    pub stream: String,
    /// The first subject token(s) of every message.
    pub subject_prefix: String,
    /// This server's token in the subjects; default: the server DUID in hex.
    pub node_id: Option<String>,
    /// `authority` or `replica`.
    pub role: Role,
    /// Messages the stream keeps per subject (1: the current state; more: history). Used when
    /// the stream is created.
    pub max_msgs_per_subject: i64,
    /// A NATS credentials file (JWT + NKey seed).
    pub creds_file: Option<PathBuf>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// A token (instead of `user`/`password`).
    pub token: Option<String>,
    /// PEM CA certificate(s) to verify the NATS server with.
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// Most messages published and not yet acknowledged by JetStream at once.
    pub max_in_flight: usize,
}

/// Default `nats_url`.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: DEFAULT_NATS_URL.into(),
            stream: "LEASEQUERYD".into(),
            subject_prefix: "leasequeryd".into(),
            node_id: None,
            role: Role::Authority,
            max_msgs_per_subject: 1,
            creds_file: None,
            user: None,
            password: None,
            token: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            max_in_flight: 1024,
        }
    }
}

impl ClusterConfig {
    /// Checks every key; the message names it (`cluster.KEY`). `data_dir_set`: whether the
    /// server has a `data_dir` (an authority needs one: its journal is the spool).
    pub fn validate(&self, data_dir_set: bool) -> Result<(), String> {
        if self.nats_url.trim().is_empty() {
            return Err("cluster.nats_url is empty".into());
        }
        for url in self.nats_url.split(',') {
            let url = url.trim();
            if let Err(e) = url.parse::<async_nats::ServerAddr>() {
                return Err(format!("cluster.nats_url {url:?}: {e}"));
            }
        }
        let bad_stream = self.stream.is_empty()
            || self.stream.len() > 255
            || self
                .stream
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c));
        if bad_stream {
            return Err(format!(
                "cluster.stream {:?}: want 1 to 255 characters without whitespace, '.', '*', '>', '/' or '\\'",
                self.stream
            ));
        }
        contract::check_prefix(&self.subject_prefix).map_err(|e| format!("cluster.{e}"))?;
        if let Some(id) = &self.node_id {
            contract::check_node_id(id).map_err(|e| format!("cluster.{e}"))?;
        }
        if !(1..=1_000_000).contains(&self.max_msgs_per_subject) {
            return Err(format!(
                "cluster.max_msgs_per_subject = {}: must be 1..=1000000",
                self.max_msgs_per_subject
            ));
        }
        if !(1..=65_536).contains(&self.max_in_flight) {
            return Err(format!(
                "cluster.max_in_flight = {}: must be 1..=65536",
                self.max_in_flight
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(
                "cluster.user and cluster.password go together: set both or neither".into(),
            );
        }
        let auths = [
            self.creds_file.is_some(),
            self.user.is_some(),
            self.token.is_some(),
        ];
        if auths.iter().filter(|&&a| a).count() > 1 {
            return Err(
                "cluster.creds_file, cluster.user/password and cluster.token are alternatives: set one"
                    .into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(
                "cluster.tls_cert and cluster.tls_key go together: set both or neither".into(),
            );
        }
        match self.role {
            Role::Authority if !data_dir_set => Err(
                "[cluster] role = \"authority\" needs data_dir (--data-dir): the durable journal \
                 is the publisher's spool (what JetStream has not acknowledged is published from \
                 it after an outage or a restart)"
                    .into(),
            ),
            Role::Replica if data_dir_set => Err(
                "cluster.role = \"replica\" (--replica) keeps no journal: its leases come from the \
                 stream; remove data_dir (--data-dir)"
                    .into(),
            ),
            Role::Replica => Ok(()),
            Role::Authority => Ok(()),
        }
    }

    /// The files the start reads (`--check-config`): readable.
    pub fn check_files(&self) -> Result<(), String> {
        for (key, p) in [
            ("creds_file", &self.creds_file),
            ("tls_ca", &self.tls_ca),
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
        ] {
            if let Some(p) = p {
                std::fs::File::open(p)
                    .map_err(|e| format!("cluster.{key} {}: {e}", p.display()))?;
            }
        }
        Ok(())
    }

    /// The `node_id` in effect: the configured one, else the server DUID in hex.
    pub fn node_id_or(&self, server_duid: &[u8]) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| server_duid.iter().map(|b| format!("{b:02x}")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_key_names() {
        let c = ClusterConfig::default();
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(c.stream, "LEASEQUERYD");
        assert_eq!(c.subject_prefix, "leasequeryd");
        assert_eq!(c.max_msgs_per_subject, 1);
        assert!(c.validate(true).is_ok());
        let e = c.validate(false).unwrap_err();
        assert!(e.contains("data_dir"), "{e}");
        let cases: Vec<(ClusterConfig, &str)> = vec![
            (
                ClusterConfig {
                    nats_url: "".into(),
                    ..c.clone()
                },
                "cluster.nats_url",
            ),
            (
                ClusterConfig {
                    nats_url: "http://x:1".into(),
                    ..c.clone()
                },
                "cluster.nats_url",
            ),
            (
                ClusterConfig {
                    stream: "A.B".into(),
                    ..c.clone()
                },
                "cluster.stream",
            ),
            (
                ClusterConfig {
                    subject_prefix: "a.*".into(),
                    ..c.clone()
                },
                "cluster.subject_prefix",
            ),
            (
                ClusterConfig {
                    node_id: Some("a.b".into()),
                    ..c.clone()
                },
                "cluster.node_id",
            ),
            (
                ClusterConfig {
                    max_msgs_per_subject: 0,
                    ..c.clone()
                },
                "cluster.max_msgs_per_subject",
            ),
            (
                ClusterConfig {
                    max_in_flight: 0,
                    ..c.clone()
                },
                "cluster.max_in_flight",
            ),
            (
                ClusterConfig {
                    user: Some("u".into()),
                    ..c.clone()
                },
                "cluster.user",
            ),
            (
                ClusterConfig {
                    token: Some("t".into()),
                    creds_file: Some("/x".into()),
                    ..c.clone()
                },
                "cluster.creds_file",
            ),
            (
                ClusterConfig {
                    tls_key: Some("/k".into()),
                    ..c.clone()
                },
                "cluster.tls_cert",
            ),
            (
                ClusterConfig {
                    role: Role::Replica,
                    ..c.clone()
                },
                "remove data_dir",
            ),
        ];
        for (cfg, key) in cases {
            let e = cfg.validate(true).unwrap_err();
            assert!(e.contains(key), "{key}: {e}");
        }
        assert!(ClusterConfig {
            nats_url: "nats://a:4222, tls://b:4223".into(),
            ..c.clone()
        }
        .validate(true)
        .is_ok());
        assert_eq!(c.node_id_or(&[0, 4, 0xab]), "0004ab");
        assert!(ClusterConfig {
            role: Role::Replica,
            ..c.clone()
        }
        .validate(false)
        .is_ok());
    }
}
