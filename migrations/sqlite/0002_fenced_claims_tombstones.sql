-- Issue 14: fenced outbox claims, user tombstones, one partner account per SCIM user.

-- A claim carries a token that completing, failing, releasing and renewing the row require, so
-- a worker whose lease ran out can no longer record an outcome over a newer claim.
ALTER TABLE outbox ADD COLUMN claim_token TEXT;
-- Rows of a site no configured process serves are parked (kept, reported, not retried or
-- counted as failing) until a process that serves the site claims them again.
ALTER TABLE outbox ADD COLUMN parked_ms BIGINT;
-- Renewal finds a process's claims without scanning the outbox.
CREATE INDEX outbox_claimed_ix ON outbox (claimed_by);

-- A partner account the IdP's intent no longer has stays as a tombstone until every site has
-- converged (the account is deleted there, or stripped when protected): `deleted`, the email of
-- a deleted user (the convergence of a (site, user) whose user row is gone reads it), or
-- `retired`, a live user's former email after an email change (the user's convergence removes
-- that account too, so a change that half-happened at some site cannot leave it behind). Once
-- converged (`converged_ms`) a row is kept a week: a DELETE the IdP was answered 503 for and
-- retries gets 204 (the deletion it asked for is done), one already answered 204
-- (`answered_ms`) gets 404.
CREATE TABLE user_tombstones (
    tenant           TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    partner_email    TEXT   NOT NULL,
    partner_email_lc TEXT   NOT NULL,
    kind             TEXT   NOT NULL, -- deleted | retired
    deleted_ms       BIGINT NOT NULL,
    converged_ms     BIGINT,
    answered_ms      BIGINT,
    PRIMARY KEY (tenant, id, partner_email_lc)
);
CREATE INDEX user_tombstones_email_ix ON user_tombstones (tenant, partner_email_lc);

-- One SCIM user per partner account in a tenant (users without an email address are not at
-- the partner). A store holding two users of one partner email must be repaired before this
-- migration applies: `SELECT tenant, partner_email_lc, COUNT(*) FROM users
-- WHERE partner_email_lc <> '' GROUP BY 1, 2 HAVING COUNT(*) > 1`.
DROP INDEX users_partner_email_lc_ix;
CREATE UNIQUE INDEX users_partner_email_lc_uq ON users (tenant, partner_email_lc)
    WHERE partner_email_lc <> '';
CREATE INDEX users_partner_email_lc_ix ON users (tenant, partner_email_lc);

-- Every partner name the bridge has given (or tried to give) a group, kept while the group
-- exists: all of them count as managed, so a rename that half-happened at some site (the
-- partner applied it, its answer was lost) is never taken for an unmanaged group that would
-- keep members who left.
CREATE TABLE group_known_names (
    tenant   TEXT NOT NULL,
    group_id TEXT NOT NULL,
    name     TEXT NOT NULL,
    name_lc  TEXT NOT NULL,
    since_ms BIGINT NOT NULL, -- the latest rename that gave or took this name began then
    PRIMARY KEY (tenant, group_id, name_lc),
    FOREIGN KEY (tenant, group_id) REFERENCES groups (tenant, id) ON DELETE CASCADE
);
