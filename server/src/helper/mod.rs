//! The privilege split (DESIGN §11): the web process runs as its own
//! unprivileged user and asks a small root helper, over a unix socket, for
//! everything privileged. This module is what both halves share: the
//! framing ([`frame`]), who may connect ([`peer`]) and what may be asked
//! ([`protocol`]).

pub mod frame;
pub mod peer;
pub mod protocol;
