-- Leases that make one writer at a time act on a name at the partner, across every replica.
-- `lock_key` names what is held:
--   `group-names:<group id>`: the names a group carries at the partner (a SCIM rename, until
--     it commits or is undone, or a convergence finishing or undoing a rename that
--     half-happened). Without it, a convergence putting a group back under the store's name
--     could run while the IdP's retry of that rename renamed or created it, leaving the group
--     under both names at a site.
--   `group-name:<lowercased displayName>`: a group being created (or renamed onto a new
--     displayName) from before its checks and partner calls until it commits.
--   `user-name:<lowercased userName>`, `user-email:<lowercased partner email>`: a user being
--     created (or taking a new userName or email) from before its partner calls until its row
--     commits. Without it, an IdP that gave up on a slow POST and sent it again got the user
--     from the second, deleted it, and the first, still creating the account, committed a
--     second SCIM user the IdP never heard of, with the account at the partner.
-- A lock is held until `until_ms` at the latest (a holder that died lets go then).
--
-- It takes over from `group_rename_locks` (migration 0003): the locks live there are copied
-- here, and that table stays, unused, so a replica of the previous version still running
-- during a rolling upgrade keeps working (its renames lock there; between old and new
-- replicas renames do not exclude each other until every replica runs this version, and
-- only upgraded replicas hold a user's userName and email while creating it). A later
-- migration drops it.
CREATE TABLE write_locks (
    tenant   TEXT   NOT NULL,
    lock_key TEXT   NOT NULL,
    holder   TEXT   NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, lock_key)
);
INSERT INTO write_locks (tenant, lock_key, holder, until_ms)
    SELECT tenant, 'group-names:' || group_id, holder, until_ms FROM group_rename_locks;
