//! The bridge's own HTTPS listener (rustls), for deployments without a reverse proxy.
