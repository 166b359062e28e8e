-- The last credential check of each partner site (`bridge::credentials`): whether the partner
-- accepted the site's API key (`state` 'ok') or refused it ('refused'), when that was last
-- found (`checked_ms`) and since when the state holds (`since_ms`). Written by every process
-- that serves the site (at start, periodically, and when a convergence meets a refusal), read
-- by `scim-bridge status`, which runs as a process of its own. A check that got no answer
-- telling either way (network error, 5xx) changes nothing here. Never holds the key.
CREATE TABLE site_credentials (
    tenant     TEXT   NOT NULL,
    site       TEXT   NOT NULL,
    state      TEXT   NOT NULL,
    checked_ms BIGINT NOT NULL,
    since_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant, site)
);
