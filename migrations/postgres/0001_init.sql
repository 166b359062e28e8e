-- scim-bridge store, PostgreSQL dialect. Same history in intent as migrations/sqlite.
-- Every table is scoped by tenant; ids are caller-generated strings (UUID v4).
-- Timestamps are unix milliseconds (BIGINT); resources are canonical SCIM JSON as TEXT.

CREATE TABLE users (
    tenant           TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    user_name        TEXT    NOT NULL,
    user_name_lc     TEXT    NOT NULL,
    external_id      TEXT,
    active           BOOLEAN NOT NULL,
    partner_email    TEXT    NOT NULL,
    partner_email_lc TEXT    NOT NULL,
    emails           TEXT    NOT NULL, -- JSON array of every emails[].value, as given
    resource         TEXT    NOT NULL, -- SCIM User without `groups`
    created_ms       BIGINT  NOT NULL,
    last_modified_ms BIGINT  NOT NULL,
    version          BIGINT  NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX users_user_name_lc_uq ON users (tenant, user_name_lc);
CREATE INDEX users_external_id_ix ON users (tenant, external_id);
CREATE INDEX users_partner_email_lc_ix ON users (tenant, partner_email_lc);
CREATE INDEX users_created_ix ON users (tenant, created_ms, id);

-- Lowercased emails[].value of each user, for `emails.value eq` filters.
CREATE TABLE user_emails (
    tenant   TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    value_lc TEXT NOT NULL,
    PRIMARY KEY (tenant, user_id, value_lc),
    FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, id) ON DELETE CASCADE
);
CREATE INDEX user_emails_value_lc_ix ON user_emails (tenant, value_lc);

CREATE TABLE groups (
    tenant           TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    display_name     TEXT   NOT NULL,
    display_name_lc  TEXT   NOT NULL,
    external_id      TEXT,
    partner_name     TEXT   NOT NULL,
    access           TEXT,
    resource         TEXT   NOT NULL, -- SCIM Group without `members`
    created_ms       BIGINT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    version          BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX groups_display_name_lc_uq ON groups (tenant, display_name_lc);
CREATE INDEX groups_external_id_ix ON groups (tenant, external_id);
CREATE INDEX groups_partner_name_ix ON groups (tenant, partner_name);
CREATE INDEX groups_created_ix ON groups (tenant, created_ms, id);

-- The group -> members index; the (tenant, user_id) index serves a user's `groups`.
CREATE TABLE memberships (
    tenant   TEXT NOT NULL,
    group_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (tenant, group_id, user_id),
    FOREIGN KEY (tenant, group_id) REFERENCES groups (tenant, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, id) ON DELETE CASCADE
);
CREATE INDEX memberships_user_ix ON memberships (tenant, user_id);

-- One row per (tenant, site, user) to bring in line with the store (DESIGN.md section 4).
-- No foreign key to users: a mark may outlive a concurrent user delete; the worker skips it.
CREATE TABLE outbox (
    tenant           TEXT    NOT NULL,
    site             TEXT    NOT NULL,
    user_id          TEXT    NOT NULL,
    generation       BIGINT  NOT NULL, -- bumped by every mark
    done_generation  BIGINT  NOT NULL, -- highest generation a worker completed
    due_ms           BIGINT  NOT NULL,
    attempts         INTEGER NOT NULL,
    last_error       TEXT,
    claimed_by       TEXT,
    claimed_until_ms BIGINT,
    marked_ms        BIGINT  NOT NULL,
    PRIMARY KEY (tenant, site, user_id)
);
CREATE INDEX outbox_due_ix ON outbox (due_ms);
CREATE INDEX outbox_user_ix ON outbox (tenant, user_id);

CREATE TABLE audit (
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms         BIGINT  NOT NULL,
    tenant        TEXT    NOT NULL,
    credential    TEXT    NOT NULL,
    client        TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    operation     TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT,
    status        INTEGER NOT NULL,
    detail        TEXT
);
CREATE INDEX audit_tenant_ix ON audit (tenant, seq);
CREATE INDEX audit_at_ix ON audit (at_ms);
