-- One writer at a time changes the names a group carries at the partner: a SCIM rename (its
-- request, across every site, until it commits or is undone) or a convergence finishing or
-- undoing a rename that half-happened. Without it, a convergence that decided to put a group
-- back under the store's name could run while the IdP's retry of that rename renamed or
-- created it, leaving the group under both names at a site (members of the old one keep what
-- it grants). A lock is held until `until_ms` at the latest (a holder that died lets go then).
CREATE TABLE group_rename_locks (
    tenant   TEXT   NOT NULL,
    group_id TEXT   NOT NULL,
    holder   TEXT   NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, group_id)
);
