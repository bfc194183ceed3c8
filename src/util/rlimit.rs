//! Raising the open-file limit, as the Go runtime does for the Go exporter.
//!
//! Every poller holds a connection, so a thousand services need well over a thousand file
//! descriptors, while many systems start processes with a soft limit of 1024. Without this an
//! operator switching from the Go exporter would see connection failures at scale (and tiny_http
//! stops accepting for good on its first `EMFILE`).

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns (old, new) soft limits.
pub fn raise_nofile() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct into memory we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let old: u64 = lim.rlim_cur;
    if lim.rlim_cur >= lim.rlim_max {
        return Ok((old, old));
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit only reads the struct we pass; raising the soft limit up to the hard
    // limit needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((old, lim.rlim_cur))
}

#[cfg(test)]
mod tests {
    #[test]
    fn raising_is_idempotent() {
        let (_, first) = super::raise_nofile().unwrap();
        let (old, second) = super::raise_nofile().unwrap();
        assert_eq!(old, first);
        assert_eq!(second, first);
    }
}
