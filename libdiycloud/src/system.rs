//! The wiring: the real adapters, built in this one place for the entry
//! points (the PAM module, `slicectl`, the server). The use cases know only
//! the ports; no use case names an adapter.

use crate::adapters::nvidia::SystemGpus;
use crate::adapters::platform::SystemAccounts;
use crate::adapters::quotactl::SystemQuotas;
use crate::adapters::systemd::Systemd;
use crate::ports::Ports;
use crate::usecases::admin::Admin;

/// systemd on the system bus, the machine's accounts, the kernel's quotas
/// and the node's GPUs.
pub type SystemPorts = Ports<Systemd, SystemAccounts, SystemQuotas, SystemGpus>;

/// The admin use cases over the real adapters.
pub type SystemAdmin<'a> = Admin<'a, Systemd, SystemAccounts, SystemQuotas, SystemGpus>;

/// The real ports.
pub fn ports() -> SystemPorts {
    Ports {
        slice: Systemd::default(),
        accounts: SystemAccounts,
        quota: SystemQuotas,
        gpu: SystemGpus,
    }
}
