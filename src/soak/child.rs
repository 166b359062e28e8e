//! The bridge as a child process: its configuration, its start, its temporary folder.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::{OWNER, SITE};

/// The child bridge process; killed when dropped.
pub(super) struct Child {
    pub(super) child: std::process::Child,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn write_config(
    dir: &Path,
    store_url: &str,
    tenant: &str,
    token: &str,
    partner: &str,
    key: &str,
) -> anyhow::Result<PathBuf> {
    // The partner settings are shorter than the defaults so a fault's effects end soon after
    // it (see GRACE); the bridge's own partner rate limit and the inbound limits are off so
    // that, without faults, nothing but a bug answers 429. Info logs only for the start-up
    // line that names the address; the audit log would fill the disk in 30 minutes.
    let toml = format!(
        "listen = \"127.0.0.1:0\"\n\
         data_dir = \"{dir}\"\n\
         [store]\nurl = \"{store_url}\"\n\
         [log]\nlevel = \"warn,scim_bridge::cli=info\"\nformat = \"json\"\n\
         [http.rate_limit]\nper_second = 0.0\nburst = 1\n\
         [http.auth_failure_limit]\nper_second = 0.0\nburst = 1\n\
         [bridge]\nwait_deadline_ms = 3000\nreconcile_interval_s = 0\nretry_max_ms = 5000\n\
         [bridge.partner]\nrequest_timeout_ms = 2000\ncall_deadline_ms = 6000\n\
         max_attempts = 4\nbackoff_base_ms = 100\nbackoff_max_ms = 1000\n\
         rate_per_second = 0.0\ncircuit_open_ms = 3000\n\
         [[tenants]]\nname = \"{tenant}\"\ninvited_by_email = \"{OWNER}\"\n\
         [[tenants.credentials.bearer_tokens]]\nname = \"soak\"\ntoken = \"{token}\"\n\
         [[tenants.sites]]\nsite_name = \"{SITE}\"\napi_key = \"{key}\"\nbase_url = \"{partner}\"\n",
        dir = dir.display(),
    );
    let path = dir.join("scim-bridge.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}

/// Starts `serve` as a child and waits for the address it bound.
pub(super) async fn start_bridge(config: &Path, dir: &Path) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe().context("current_exe")?;
    let stderr_path = dir.join("bridge.stderr");
    let stderr = std::fs::File::create(&stderr_path)?;
    let stdout = std::fs::File::create(dir.join("bridge.stdout"))?;
    let child = std::process::Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env_remove("SCIM_BRIDGE_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .context("start the bridge")?;
    let mut child = Child { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let listen = text.lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let message = v["fields"]["message"].as_str().or(v["message"].as_str())?;
            (message == "serving")
                .then(|| v["fields"]["listen"].as_str().map(str::to_owned))
                .flatten()
        });
        if let Some(listen) = listen {
            return Ok((child, format!("http://{listen}")));
        }
        if let Ok(Some(status)) = child.child.try_wait() {
            anyhow::bail!("the bridge exited ({status}) before serving:\n{text}");
        }
        if Instant::now() > deadline {
            anyhow::bail!("the bridge did not start within 60 s:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes a folder when dropped.
pub(super) struct RemoveDir(pub(super) PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store URL without its password.
pub(super) fn redact_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(unparsable store URL)".to_owned(),
    }
}
