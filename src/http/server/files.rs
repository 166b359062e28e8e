//! The process's open-file limit (`RLIMIT_NOFILE`), fitted to `http.max_connections`.

/// Open files the process keeps besides its client connections: the store's files or
/// connections, partner connections, listeners, the runtime.
pub const RESERVED_FILES: u64 = 256;

/// Makes room in the process's open-file limit (`RLIMIT_NOFILE`) for `max_connections` client
/// connections plus [`RESERVED_FILES`]: raises the soft limit as far as needed and the hard
/// limit allows. Returns the cap that fits: `max_connections`, or less (with a warning) when
/// the limit cannot be raised far enough, so that a full listener never starves the store
/// and the partner client of files.
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let before = getrlimit(Resource::Nofile);
        let mut fit = fit_files(before.current, before.maximum, max_connections);
        if let Some(soft) = fit.raise_soft_to {
            let raised = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(soft),
                    maximum: before.maximum,
                },
            );
            match raised {
                Ok(()) => tracing::info!(
                    from = before.current,
                    to = soft,
                    "raised the open-file limit for http.max_connections"
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot raise the open-file limit");
                    fit = fit_files(before.current, before.current, max_connections);
                }
            }
        }
        if fit.max_connections < max_connections {
            tracing::warn!(
                max_connections = fit.max_connections,
                configured = max_connections,
                open_file_limit = ?getrlimit(Resource::Nofile).current,
                reserved = RESERVED_FILES,
                "http.max_connections lowered to fit the open-file limit; raise the limit \
                 (systemd LimitNOFILE=, docker --ulimit nofile=) to serve more"
            );
        }
        fit.max_connections
    }
    #[cfg(not(unix))]
    {
        max_connections
    }
}

/// What [`fit_open_file_limit`] does with a soft and a hard limit (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileFit {
    pub(super) raise_soft_to: Option<u64>,
    pub(super) max_connections: usize,
}

pub(super) fn fit_files(soft: Option<u64>, hard: Option<u64>, max_connections: usize) -> FileFit {
    let wanted = max_connections as u64;
    let need = wanted.saturating_add(RESERVED_FILES);
    let Some(soft) = soft.filter(|soft| *soft < need) else {
        return FileFit {
            raise_soft_to: None,
            max_connections,
        };
    };
    let limit = hard.map_or(need, |hard| hard.min(need)).max(soft);
    let cap = if limit >= need {
        wanted
    } else {
        // A quarter of a small limit, at least one connection: the rest stays for the store,
        // the partner connections (and, in the sandbox, the emulator's own sockets).
        limit.saturating_sub(RESERVED_FILES).max(limit / 4).max(1)
    };
    FileFit {
        raise_soft_to: (limit > soft).then_some(limit),
        max_connections: usize::try_from(cap).unwrap_or(max_connections),
    }
}
