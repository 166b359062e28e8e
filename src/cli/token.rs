//! `scim-bridge token new`: fresh credentials (bearer tokens, Basic passwords, OAuth client
//! secrets, admin tokens), each printed with its SHA-256 and the lines to put in the
//! configuration.

use std::process::ExitCode;

use super::TokenCommand;
use crate::secret::random_token;

/// Runs `token new`: which credential it makes follows its flags.
pub(super) fn token(command: TokenCommand) -> ExitCode {
    let TokenCommand::New {
        name,
        basic,
        oauth_client,
        admin,
    } = command;
    match (basic, oauth_client) {
        (Some(user), _) => basic_new(&name, &user),
        (None, Some(client)) => {
            oauth_client_new(&name, &client);
            ExitCode::SUCCESS
        }
        (None, None) if admin => {
            admin_token_new();
            ExitCode::SUCCESS
        }
        (None, None) => {
            token_new(&name);
            ExitCode::SUCCESS
        }
    }
}

/// A Basic password for `user`, its hash and configuration lines; exit code 2 on a bad name.
fn basic_new(name: &str, user: &str) -> ExitCode {
    if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
        eprintln!(
            "error: --basic: the user name must be non-empty, without ':' or control characters"
        );
        return ExitCode::from(2);
    }
    let password = random_token();
    let hash = hex::encode(crate::config::sha256(&password));
    println!("username: {user}");
    println!("password: {password}");
    println!("sha256:   {hash}");
    println!();
    println!("Give the user name and password to the identity provider; store only the hash");
    println!("(the password is 256 random bits, so its SHA-256 is checked at once and never");
    println!("waits behind anyone's guesses):");
    println!("  environment (single tenant): SCIM_BRIDGE_BASIC__USERNAME={user}");
    println!("                               SCIM_BRIDGE_BASIC__PASSWORD_SHA256={hash}");
    println!("  configuration file:");
    println!("    [[tenants.credentials.basic]]");
    println!("    name = \"{name}\"");
    println!("    username = \"{user}\"");
    println!("    password_sha256 = \"{hash}\"");
    ExitCode::SUCCESS
}

/// An OAuth client secret and a signing key for `client`, with configuration lines.
fn oauth_client_new(name: &str, client: &str) {
    let secret = random_token();
    let hash = hex::encode(crate::config::sha256(&secret));
    let signing_key = random_token();
    println!("client_id:     {client}");
    println!("client_secret: {secret}");
    println!("sha256:        {hash}");
    println!(
        "signing_key:   {signing_key}   (one per tenant, shared by all replicas; keep it secret)"
    );
    println!();
    println!("Give the client id and secret to the identity provider, with the token URL");
    println!("<public base URL><tenant base path>/oauth/token; store only the hash:");
    println!("  environment (single tenant): SCIM_BRIDGE_OAUTH__CLIENT_ID={client}");
    println!("                               SCIM_BRIDGE_OAUTH__CLIENT_SECRET_SHA256={hash}");
    println!("                               SCIM_BRIDGE_OAUTH__SIGNING_KEY_FILE=/run/secrets/oauth-signing-key");
    println!("  configuration file:");
    println!("    [tenants.credentials.oauth]");
    println!("    signing_key_file = \"/run/secrets/oauth-signing-key\"");
    println!("    [[tenants.credentials.oauth.clients]]");
    println!("    name = \"{name}\"");
    println!("    client_id = \"{client}\"");
    println!("    client_secret_sha256 = \"{hash}\"");
}

/// A token for the admin endpoints, with configuration lines.
fn admin_token_new() {
    let token = random_token();
    let hash = hex::encode(crate::config::sha256(&token));
    println!("token:  {token}");
    println!("sha256: {hash}");
    println!();
    println!("Use it as `Authorization: Bearer <token>` on /admin/...; store only the hash:");
    println!("  environment: SCIM_BRIDGE_ADMIN__TOKEN_SHA256={hash}");
    println!("  configuration file:");
    println!("    [admin]");
    println!("    token_sha256 = \"{hash}\"");
}

/// A bearer token for an identity provider, with configuration lines.
fn token_new(name: &str) {
    let token = random_token();
    let hash = hex::encode(crate::config::sha256(&token));
    println!("token:  {token}");
    println!("sha256: {hash}");
    println!();
    println!("Give the token to the identity provider; store only the hash:");
    println!("  environment (single tenant): SCIM_BRIDGE_BEARER_TOKEN_SHA256={hash}");
    println!("  configuration file:");
    println!("    [[tenants.credentials.bearer_tokens]]");
    println!("    name = \"{name}\"");
    println!("    sha256 = \"{hash}\"");
}
