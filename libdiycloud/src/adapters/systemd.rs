//! The systemd adapter: `SetUnitProperties` on a user's slice and reading
//! its usage back, over the system D-Bus.
//!
//! This runs inside sshd and other daemons, so each call opens its own
//! connection inside one `zbus::block_on` and closes it before returning:
//! zbus then leaves no helper thread behind (a connection that outlived the
//! call would get one). Every method call has a timeout.

use std::collections::HashMap;
use std::time::Duration;

use zbus::{OwnedObjectPath, OwnedVariant as OwnedValue, Variant as Value};

use crate::model::slice::{CgroupVersion, PropertyValue, SliceProperty, SliceUsage};
use crate::ports::{PortError, SliceLink, SlicePort};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const SLICE: &str = "org.freedesktop.systemd1.Slice";

/// The system bus, at its fixed path. Never from `DBUS_SYSTEM_BUS_ADDRESS`:
/// under `su` that variable belongs to the caller, who could point session
/// open at a fake systemd that "sizes" nothing.
pub const SYSTEM_BUS_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";

/// The default time one D-Bus call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot reach systemd on the system bus: {0}")]
    Connect(zbus::Error),
    #[error("systemd {method} failed: {source}")]
    Call {
        method: &'static str,
        source: zbus::Error,
    },
}

impl From<SystemdError> for PortError {
    fn from(e: SystemdError) -> Self {
        PortError::new(e)
    }
}

/// A client for systemd's manager on the system bus.
///
/// (systemd's private socket, which `systemctl` uses as root, would save the
/// bus daemon's hop, but its replies carry a well-known name as sender,
/// which zbus rejects as an invalid unique name.)
#[derive(Debug, Clone)]
pub struct Systemd {
    timeout: Duration,
}

impl Default for Systemd {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Systemd {
    /// systemd on the system bus.
    pub fn system() -> Self {
        Self::default()
    }

    fn builder(&self) -> zbus::connection::Builder<'static> {
        zbus::connection::Builder::address(SYSTEM_BUS_ADDRESS).method_timeout(self.timeout)
    }

    /// Runs `f` with a fresh connection that is closed before this returns.
    fn with_connection<T>(
        &self,
        f: impl AsyncFnOnce(&zbus::Connection) -> Result<T, SystemdError>,
    ) -> Result<T, SystemdError> {
        zbus::block_on(async {
            let conn = self
                .builder()
                .build()
                .await
                .map_err(SystemdError::Connect)?;
            run_and_close(conn, f).await
        })
    }

    /// `SetUnitProperties` on its own connection (see [`Link::set_properties`]).
    pub fn set_unit_properties(
        &self,
        unit: &str,
        properties: &[SliceProperty],
    ) -> Result<(), SystemdError> {
        self.with_connection(async |conn| set_unit_properties(conn, unit, properties).await)
    }

    /// The manager's version, e.g. "252.38-1~deb12u1": a cheap "is it there".
    pub fn version(&self) -> Result<String, SystemdError> {
        self.with_connection(async |conn| {
            let reply = conn
                .call_method(
                    Some(SYSTEMD),
                    MANAGER_PATH,
                    Some(PROPERTIES),
                    "Get",
                    &(MANAGER, "Version"),
                )
                .await
                .map_err(call_error("Get(Version)"))?;
            let value: OwnedValue = reply
                .body()
                .deserialize()
                .map_err(call_error("Get(Version)"))?;
            Ok(String::try_from(value).unwrap_or_default())
        })
    }

    /// Starts the transient scope `name` in `slice` for the running process
    /// `pid`, with `properties` of its own; systemd collects it when the
    /// process ends, failed or not. Returns once the job is queued.
    pub fn start_scope(
        &self,
        name: &str,
        slice: &str,
        pid: u32,
        properties: &[SliceProperty],
    ) -> Result<(), SystemdError> {
        self.with_connection(async |conn| {
            let mut values: Vec<(&str, Value<'_>)> = vec![
                ("Slice", Value::from(slice)),
                ("PIDs", Value::from(vec![pid])),
                ("CollectMode", Value::from("inactive-or-failed")),
            ];
            values.extend(
                properties
                    .iter()
                    .map(|p| (p.name, property_value(&p.value))),
            );
            let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
            conn.call_method(
                Some(SYSTEMD),
                MANAGER_PATH,
                Some(MANAGER),
                "StartTransientUnit",
                &(name, "fail", values, aux),
            )
            .await
            .map(|_| ())
            .map_err(call_error("StartTransientUnit"))
        })
    }

    /// Usage and limits of `unit` as systemd sees them, on its own connection.
    pub fn slice_usage(&self, unit: &str) -> Result<SliceUsage, SystemdError> {
        self.with_connection(async |conn| slice_usage(conn, unit).await)
    }
}

/// One connection to systemd, for the apply and usage use cases, which
/// decide when it is made and must [`SliceLink::close`] it before their
/// `block_on` returns.
pub struct Link(zbus::Connection);

impl SlicePort for Systemd {
    type Link = Link;

    /// The first poll connects and writes the whole handshake (AUTH, BEGIN
    /// and Hello go in one write): a caller that polls it once and then does
    /// blocking work has the bus daemon answer meanwhile.
    async fn connect(&self) -> Result<Link, PortError> {
        let conn = self
            .builder()
            .build()
            .await
            .map_err(SystemdError::Connect)?;
        Ok(Link(conn))
    }

    /// zbus's own executor, on the calling thread: its connections need its
    /// reactor.
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        zbus::block_on(future)
    }

    fn cgroup_version(&self) -> Result<CgroupVersion, PortError> {
        Ok(crate::adapters::cgroup::Hierarchy::detect()
            .map_err(PortError::new)?
            .version())
    }
}

impl SliceLink for Link {
    async fn set_properties(
        &self,
        unit: &str,
        properties: &[SliceProperty],
    ) -> Result<(), PortError> {
        Ok(set_unit_properties(&self.0, unit, properties).await?)
    }

    async fn usage(&self, unit: &str) -> Result<SliceUsage, PortError> {
        Ok(slice_usage(&self.0, unit).await?)
    }

    async fn close(self) {
        let _ = self.0.close().await;
    }
}

/// `SetUnitProperties(unit, runtime=true, properties)`: works before the
/// unit exists and changes a running one live; runtime drop-ins live in /run.
/// (Reading the values first to skip unchanged ones was measured: the
/// extra `GetAll` costs as much as the set it saves.)
async fn set_unit_properties(
    conn: &zbus::Connection,
    unit: &str,
    properties: &[SliceProperty],
) -> Result<(), SystemdError> {
    let values: Vec<(&str, Value<'_>)> = properties
        .iter()
        .map(|p| (p.name, property_value(&p.value)))
        .collect();
    conn.call_method(
        Some(SYSTEMD),
        MANAGER_PATH,
        Some(MANAGER),
        "SetUnitProperties",
        &(unit, true, values),
    )
    .await
    .map(|_| ())
    .map_err(call_error("SetUnitProperties"))
}

/// A property's value as D-Bus carries it.
fn property_value(value: &PropertyValue) -> Value<'_> {
    match value {
        PropertyValue::Bool(b) => Value::from(*b),
        PropertyValue::U64(v) => Value::from(*v),
        PropertyValue::Str(v) => Value::from(*v),
        PropertyValue::Devices(list) => Value::from(list.clone()),
    }
}

async fn slice_usage(conn: &zbus::Connection, unit: &str) -> Result<SliceUsage, SystemdError> {
    let path = load_unit(conn, unit).await?;
    let unit_props = get_all(conn, &path, "org.freedesktop.systemd1.Unit").await?;
    let slice = get_all(conn, &path, SLICE).await?;
    let number = |name: &str| {
        slice
            .get(name)
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v != u64::MAX)
    };
    Ok(SliceUsage {
        unit: unit.to_owned(),
        active_state: unit_props
            .get("ActiveState")
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok())
            .unwrap_or_default(),
        cpu_usage_nsec: number("CPUUsageNSec"),
        memory_current: number("MemoryCurrent"),
        tasks_current: number("TasksCurrent"),
        cpu_quota_per_sec_usec: number("CPUQuotaPerSecUSec"),
        memory_max: number("MemoryMax"),
        tasks_max: number("TasksMax"),
        memory_high: number("MemoryHigh"),
        cpu_weight: number("CPUWeight").or(number("CPUShares").map(|s| s * 100 / 1024)),
        io_weight: number("IOWeight").or(number("BlockIOWeight")),
    })
}

/// Runs `f`, then closes the connection, still inside `block_on`: the one
/// place a connection ends, so nothing of it survives a call (a connection
/// alive when `block_on` returns would get a zbus helper thread).
async fn run_and_close<T>(
    conn: zbus::Connection,
    f: impl AsyncFnOnce(&zbus::Connection) -> Result<T, SystemdError>,
) -> Result<T, SystemdError> {
    let result = f(&conn).await;
    let _ = conn.close().await;
    result
}

fn call_error(method: &'static str) -> impl Fn(zbus::Error) -> SystemdError {
    move |source| SystemdError::Call { method, source }
}

/// The object path of `unit`, loading it if systemd has not yet.
async fn load_unit(conn: &zbus::Connection, unit: &str) -> Result<OwnedObjectPath, SystemdError> {
    let reply = conn
        .call_method(
            Some(SYSTEMD),
            MANAGER_PATH,
            Some(MANAGER),
            "LoadUnit",
            &(unit,),
        )
        .await
        .map_err(call_error("LoadUnit"))?;
    reply.body().deserialize().map_err(call_error("LoadUnit"))
}

/// All properties of `interface` on the unit at `path`.
async fn get_all(
    conn: &zbus::Connection,
    path: &OwnedObjectPath,
    interface: &str,
) -> Result<HashMap<String, OwnedValue>, SystemdError> {
    let reply = conn
        .call_method(
            Some(SYSTEMD),
            path,
            Some(PROPERTIES),
            "GetAll",
            &(interface,),
        )
        .await
        .map_err(call_error("GetAll"))?;
    reply.body().deserialize().map_err(call_error("GetAll"))
}

#[cfg(test)]
mod tests {
    use zbus::Variant as Value;

    #[test]
    fn a_device_list_goes_as_systemds_a_ss() {
        let list = vec![("char-pts".to_owned(), "rwm".to_owned())];
        assert_eq!(Value::from(list).value_signature().to_string(), "a(ss)");
        assert_eq!(Value::from("closed").value_signature().to_string(), "s");
    }
}
