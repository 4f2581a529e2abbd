//! Who may speak to the helper: root, and the web process's own user. The
//! kernel says who the peer is (`SO_PEERCRED`, read when it connected);
//! nothing the peer sends can change that answer.

use tokio::net::UnixStream;

/// The system user the web process runs as (created by the packages and
/// `install.sh`).
pub const WEB_USER: &str = "diycloud-web";

/// Whether a peer of uid `peer` may use the helper, where the web user's
/// uid is `web` (`None`: no such user on this machine, so only root).
pub fn allowed(peer: u32, web: Option<u32>) -> bool {
    peer == 0 || web == Some(peer)
}

/// The uid of `stream`'s peer, as the kernel recorded it.
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    stream.peer_cred().map(|cred| cred.uid())
}

/// The uid of [`WEB_USER`], if it exists.
pub fn web_uid() -> Option<u32> {
    nix::unistd::User::from_name(WEB_USER)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_web_user() {
        assert!(allowed(0, None));
        assert!(allowed(0, Some(998)));
        assert!(allowed(998, Some(998)));
        assert!(!allowed(1000, Some(998)));
        assert!(!allowed(998, None));
        assert!(!allowed(65534, Some(998)));
    }

    #[tokio::test]
    async fn the_kernel_names_the_peer() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(
            peer_uid(&a).unwrap(),
            nix::unistd::geteuid().as_raw(),
            "a socket pair's peer is this process's user"
        );
    }
}
