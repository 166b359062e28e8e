//! `scim-bridge migrate`: applies the store's migrations and exits.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{init_logging, load, open_store};
use crate::config::LogFormat;

/// Runs `migrate`: creates the data folder of a SQLite store, then applies the migrations.
pub(super) async fn migrate(path: Option<PathBuf>, log_format: Option<LogFormat>) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(log_format, Some(&config));
    if config.store.url.is_none() {
        if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
            eprintln!(
                "error: data_dir: cannot create {}: {e}",
                config.data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    }
    match open_store(&config).await {
        Ok(store) => {
            store.close().await;
            println!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
