-- What the bridge knows a partner object by at each site, where the partner addresses it by
-- an id the bridge cannot derive (RBAC sites, `api = "roles"`):
--   kind 'user': `link_key` a lowercased partner email, `partner_id` the user's id under
--     /api/v2/users (found by email on create or import, never guessed);
--   kind 'role': `link_key` a lowercased SCIM group displayName, `partner_id` the id of the
--     role the group is at that site. The link follows the role, not its name: a role renamed
--     in the site's UI stays the group's role, and a replica whose role list is a few seconds
--     old still gives a user the group's role, not one that took the group's former name.
-- `adopted`: the bridge found the object rather than created it (an adopted role is never
-- renamed or deleted by the bridge). `name` is the key as the bridge last wrote it.
CREATE TABLE partner_links (
    tenant     TEXT    NOT NULL,
    site       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    link_key   TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    partner_id TEXT    NOT NULL,
    adopted    BOOLEAN NOT NULL,
    PRIMARY KEY (tenant, site, kind, link_key)
);
CREATE INDEX partner_links_by_id ON partner_links (tenant, site, kind, partner_id);
