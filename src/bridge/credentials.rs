//! The partner sites' API keys, checked (issue 18: a wrong key must not stay invisible until
//! the first write), and the fast answer for sites known unable to take work.
//!
//! - At start and every `bridge.credential_check_interval_s`, each site's key is checked with
//!   one cheap read ([`PartnerClient::check_credentials`]). A refusal is logged at error level
//!   (tenant and site, never the key), recorded in the store for `scim-bridge status`, shown
//!   by `/readyz` (degraded, still 200) and `scim_bridge_partner_credentials_ok`. A check
//!   without an answer that tells (network error, 5xx) changes nothing.
//! - A refused key parks the site's outbox work (the engine sends nothing with it); a check
//!   that passes makes the parked rows due at once, so the work resumes by itself.
//! - A membership write whose marks are all at sites whose circuit is open or whose key is
//!   refused answers 503 with `Retry-After` at once, its intent stored
//!   ([`Bridge::blocked_error`]); with other sites among them, it waits for those only and
//!   answers as a partial success does. A user deletion answers so when any of its sites is
//!   blocked (a deletion answers 503 until every site is done); a user update answers its 2xx
//!   without waiting for blocked sites.
//!
//! [`PartnerClient::check_credentials`]: crate::partner::client::PartnerClient::check_credentials

use std::time::Duration;

use super::engine::Blocked;
use super::{now_ms, retry_after, Bridge, BridgeError, Site, Tenant};
use crate::partner::client::KeyCheck;
use crate::scim::ScimError;
use crate::store::OutboxMark;

/// One site's check.
#[derive(Debug, Clone)]
pub struct SiteCheck {
    pub tenant: String,
    pub site: String,
    pub result: KeyCheck,
}

impl Bridge {
    /// Checks every site of every tenant now, concurrently; results by tenant and site name.
    pub async fn check_credentials(&self) -> Vec<SiteCheck> {
        let mut tenants: Vec<_> = self.tenants.values().cloned().collect();
        tenants.sort_by(|a, b| a.name().cmp(b.name()));
        let mut checks = Vec::new();
        for tenant in tenants {
            let results =
                super::for_each_site(&tenant, |site| self.check_site(&tenant, site)).await;
            checks.extend(results.into_iter().map(|(site, result)| SiteCheck {
                tenant: tenant.name().to_owned(),
                site: site.name.clone(),
                result,
            }));
        }
        checks
    }

    /// Checks one site's key and acts on the answer.
    async fn check_site(&self, tenant: &Tenant, site: &Site) -> KeyCheck {
        let result = site.client.check_credentials().await;
        let (t, s) = (tenant.name(), site.name.as_str());
        let now = now_ms();
        let refused = match &result {
            KeyCheck::Accepted => false,
            KeyCheck::Refused => true,
            KeyCheck::Unreachable(why) => {
                tracing::warn!(tenant = %t, site = %s, why = %why, "credential check: the partner gave no answer that tells whether it accepts the site's API key");
                return result;
            }
        };
        self.metrics.partner_credentials(t, s, !refused);
        if refused {
            tracing::error!(
                tenant = %t,
                site = %s,
                "credential check: the partner REFUSED the site's API key; every change for this site is parked until it is fixed (api_key / api_key_file of the site, then restart)"
            );
        }
        if let Err(e) = self.store.record_site_credentials(t, s, refused, now).await {
            tracing::warn!(tenant = %t, site = %s, error = %e, "cannot record the credential check");
        }
        if !refused {
            // The client records the acceptance before this runs, so a worker parking a row
            // meanwhile either is resumed here or sees the key accepted and resumes it.
            match self.store.resume_parked(t, s, now_ms()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(tenant = %t, site = %s, rows = n, "credential check passed: the site's parked work resumes");
                    self.engine.kick();
                }
                Err(e) => {
                    tracing::warn!(tenant = %t, site = %s, error = %e, "cannot resume the site's parked work")
                }
            }
        }
        result
    }

    /// Checks every site at once, then every `bridge.credential_check_interval_s` (only once
    /// when that is 0); the task ends when the returned handle is aborted.
    pub fn start_credential_checks(&self) -> tokio::task::JoinHandle<()> {
        let bridge = self.clone();
        let every = self.options.credential_check_interval_s;
        tokio::spawn(async move {
            bridge.check_credentials().await;
            if every == 0 {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(every));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick fires at once: done above
            loop {
                tick.tick().await;
                bridge.check_credentials().await;
            }
        })
    }

    /// The sites whose key this process knows refused, as (tenant, site).
    pub fn refused_sites(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .tenants
            .values()
            .flat_map(|t| {
                t.sites
                    .iter()
                    .filter(|s| s.client.key_refused())
                    .map(|s| (t.name().to_owned(), s.name.clone()))
            })
            .collect();
        out.sort();
        out
    }

    /// True when there are marks and every one is at a site known unable to take work now:
    /// waiting for them would only hold the answer.
    pub fn all_blocked(&self, marks: &[OutboxMark]) -> bool {
        !marks.is_empty() && marks.iter().all(|m| self.engine.blocked(m).is_some())
    }

    /// The answer for a write some of whose `marks` are at a site known unable to take work
    /// now (key refused, circuit open): 503 with `Retry-After`, naming the site and why. The
    /// marks are stored; the work is carried out when the site can take it.
    pub fn blocked_error(&self, marks: &[OutboxMark]) -> Option<BridgeError> {
        let blocked = marks.iter().find_map(|m| self.engine.blocked(m))?;
        self.engine.kick();
        Some(match blocked {
            Blocked::KeyRefused(site) => BridgeError {
                error: ScimError::new(
                    503,
                    None,
                    format!(
                        "The partner site '{site}' refuses the bridge's API key. The change is \
                         stored and is carried out once an operator fixes the key (see \
                         `scim-bridge status`); retry later."
                    ),
                ),
                retry_after: Some(retry_after::KEY_REFUSED),
            },
            Blocked::CircuitOpen(site, left) => BridgeError {
                error: ScimError::new(
                    503,
                    None,
                    format!(
                        "The partner site '{site}' is unavailable (it kept failing, and calls \
                         to it pause for {} s). The change is stored and is carried out when \
                         the site answers again; retry later.",
                        left.as_secs().max(1)
                    ),
                ),
                retry_after: Some(left.as_secs().max(1)),
            },
        })
    }
}
