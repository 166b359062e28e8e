//! Bearer JWT validation (HS256 secrets, RSA/EC public keys from PEM files or a JWKS URL) and
//! the signing of the tokens the tenant's own OAuth token endpoint issues.
