//! A run's set-up: the partner emulator with the sites and the vendor's own data, the IdP's
//! model as it starts, the IdP client, and the launcher that starts bridge instances.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bridge::BridgeOptions;
use crate::config::TenantConfig;
use crate::partner::emulator::{Emulator, RunningEmulator, SiteSpec};
use crate::partner::{Access, PartnerGroup, PartnerUser};
use crate::secret::Secret;

use super::idp::{group_name, slot_email, GroupM, Idp, Model, Slot};
use super::instance::{Instance, Notes, Targets};
use super::plan::Plan;
use super::{ALL_USERS, OWNER, VENDOR_GROUP};

/// Starts the partner emulator with the plan's sites and, when the plan has a vendor slot, the
/// vendor's group and user at each site.
pub(super) async fn start_partner(
    plan: &Plan,
    seed: u64,
) -> anyhow::Result<(Emulator, RunningEmulator)> {
    let mut builder = Emulator::builder();
    for s in &plan.sites {
        let spec = SiteSpec {
            name: s.clone(),
            api_key: Secret::new(format!("key-{s}")),
            owner_email: OWNER.into(),
        };
        builder = if plan.is_rbac(s) {
            builder.rbac_site(spec)
        } else {
            builder.site(spec)
        };
    }
    let emulator = builder.build();
    let running = emulator.clone().spawn().await?;
    if plan.vendor_slot {
        for s in &plan.sites {
            if plan.is_rbac(s) {
                // The vendor's role (made in the UI: no mark of the bridge) and its user.
                let role = crate::partner::rbac::PartnerRole {
                    id: format!("vendor-role-{s}"),
                    name: VENDOR_GROUP.into(),
                    description: String::new(),
                    privileges: Vec::new(),
                    permissions: Vec::new(),
                };
                emulator.insert_role(s, role.clone());
                emulator.insert_rbac_user(
                    s,
                    crate::partner::rbac::PartnerUserV2 {
                        id: format!("vendor-user-{s}"),
                        email: slot_email(seed, 1, 0),
                        first_name: "Vendor".into(),
                        last_name: "Made".into(),
                        roles: vec![role.id],
                    },
                );
                continue;
            }
            emulator.insert_group(
                s,
                PartnerGroup {
                    name: VENDOR_GROUP.into(),
                    access: Access::Sql,
                },
            );
            emulator.insert_user(
                s,
                PartnerUser {
                    email: slot_email(seed, 1, 0),
                    first_name: "Vendor".into(),
                    last_name: "Made".into(),
                    groups: vec![VENDOR_GROUP.into(), ALL_USERS.into()],
                },
            );
        }
    }
    Ok((emulator, running))
}

/// The model: users and groups as the IdP starts them.
pub(super) fn initial_model(plan: &Plan, seed: u64) -> Model {
    let mut model = Model::default();
    for u in 0..plan.users {
        let protected = plan.owner_slot && u == 0;
        let email = if protected {
            OWNER.to_owned()
        } else {
            slot_email(seed, u, 0)
        };
        model.users.push(Slot {
            id: None,
            email: email.clone(),
            given: format!("Given{u}"),
            family: format!("Family{u}"),
            active: true,
            emails_used: BTreeSet::new(),
            vendor: plan.vendor_slot && u == 1,
            protected,
            version: 0,
            history: Vec::new(),
        });
    }
    for g in 0..plan.groups {
        model.groups.push(GroupM {
            name: group_name(g, 0),
            ..GroupM::default()
        });
    }
    model
}

/// The IdP client the connections share: 5 s per request, 2 s to connect, no proxy.
pub(super) fn new_idp(targets: Arc<Targets>, plan: &Plan, model: Model) -> anyhow::Result<Idp> {
    Ok(Idp {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?,
        targets,
        next: AtomicUsize::new(0),
        retried: AtomicUsize::new(0),
        cancelled: AtomicUsize::new(0),
        cancel_share: plan.cancel_share,
        model: Mutex::new(model),
        epoch: Instant::now(),
    })
}

/// What starting a bridge instance takes: the shared store, the tenant, the options, and
/// where instances leave their notes.
#[derive(Clone)]
pub(super) struct Launcher {
    pub(super) store_url: String,
    pub(super) tenant: TenantConfig,
    pub(super) options: BridgeOptions,
    pub(super) notes: Notes,
}

impl Launcher {
    /// Starts one instance (with retries, see [`Instance::start_retrying`]).
    pub(super) async fn start(&self) -> anyhow::Result<Instance> {
        Instance::start_retrying(&self.store_url, &self.tenant, &self.options, &self.notes).await
    }

    /// Starts an instance in every empty slot and points the IdP at it, so both serve while
    /// the outbox drains.
    pub(super) async fn restart_down(
        &self,
        mut instances: [Option<Instance>; 2],
        targets: &Targets,
    ) -> anyhow::Result<[Option<Instance>; 2]> {
        for (k, slot) in instances.iter_mut().enumerate() {
            if slot.is_none() {
                let i = self.start().await?;
                targets.set(k, Some(i.base.clone()));
                *slot = Some(i);
            }
        }
        Ok(instances)
    }
}
