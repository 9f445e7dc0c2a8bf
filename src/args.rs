//! Command-line pieces both binaries (`usctl` and `usctl-torch`) share: the store selection flags
//! and the on/off value parser. The option structs themselves live beside their configs
//! (`config::Overrides`, `eval::config::EvalOverrides`).

use crate::error::StoreError;
use clap::Args;
use std::path::PathBuf;

/// `--store`, `--dataset`, `--version`: which store version a command reads.
#[derive(Debug, Clone, Args)]
pub struct StoreSel {
    /// Store root, dataset folder, or version folder.
    #[arg(long)]
    pub store: PathBuf,
    /// Dataset to use when the store root holds several.
    #[arg(long)]
    pub dataset: Option<String>,
    /// A store version other than the newest: its folder name, a prefix of its id, or its
    /// sequence number.
    #[arg(long)]
    pub version: Option<String>,
}

impl StoreSel {
    /// The version directory these flags select (see `store::locate`).
    pub fn locate(&self) -> Result<PathBuf, StoreError> {
        crate::store::locate(&self.store, self.dataset.as_deref(), self.version.as_deref())
    }
}

/// `on`/`off` (or `true`/`false`) for boolean options that take a value.
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("{s:?}: use on or off")),
    }
}
