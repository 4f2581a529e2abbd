//! The privilege split (DESIGN §11): the web process runs as its own
//! unprivileged user and asks a small root helper, over a unix socket, for
//! everything privileged. This module is what both halves share: the
//! framing ([`frame`]) and who may connect ([`peer`]).

pub mod frame;
pub mod peer;
