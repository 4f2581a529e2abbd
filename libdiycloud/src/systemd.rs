//! The systemd adapter: `SetUnitProperties` on a user's slice and reading
//! its usage back, over the system D-Bus.
//!
//! This runs inside sshd and other daemons, so each call opens its own
//! connection inside one `zbus::block_on` and closes it before returning:
//! zbus then leaves no helper thread behind (a connection that outlived the
//! call would get one). Every method call has a timeout.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use zbus::{OwnedObjectPath, OwnedVariant as OwnedValue, Variant as Value};

use crate::cgroup::{PropertyValue, SliceProperty};

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

/// A client for systemd's manager on the system bus.
///
/// (systemd's private socket, which `systemctl` uses as root, would save the
/// bus daemon's hop, but its replies carry a well-known name as sender,
/// which zbus rejects as an invalid unique name.)
#[derive(Debug, Clone)]
pub struct Systemd {
    timeout: Duration,
}

/// What systemd reports about a slice. `None` where systemd does not know
/// (it says `u64::MAX`, e.g. before the slice has started).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SliceUsage {
    pub unit: String,
    pub active_state: String,
    pub cpu_usage_nsec: Option<u64>,
    pub memory_current: Option<u64>,
    pub tasks_current: Option<u64>,
    pub cpu_quota_per_sec_usec: Option<u64>,
    pub memory_max: Option<u64>,
    pub tasks_max: Option<u64>,
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

    /// `SetUnitProperties(unit, runtime=true, properties)`: works before the
    /// unit exists and changes a running one live; runtime drop-ins live in /run.
    /// (Reading the values first to skip unchanged ones was measured: the
    /// extra `GetAll` costs as much as the set it saves.)
    pub fn set_unit_properties(
        &self,
        unit: &str,
        properties: &[SliceProperty],
    ) -> Result<(), SystemdError> {
        let target = (unit.to_owned(), properties.to_vec(), ());
        self.set_unit_properties_prepared(|| Ok(Some(target)))
            .map(|_| ())
    }

    /// Like [`Systemd::set_unit_properties`] for the unit and properties
    /// `prepare` decides on, run while the connection is being made: the
    /// bus daemon answers the handshake while `prepare` does its (blocking)
    /// work, e.g. a database lookup. `Ok(None)` from `prepare` sends nothing
    /// (the half-made connection is dropped, unreachable bus or not). Returns
    /// what `prepare` returned.
    pub fn set_unit_properties_prepared<T, E: From<SystemdError>>(
        &self,
        prepare: impl FnOnce() -> Result<Option<(String, Vec<SliceProperty>, T)>, E>,
    ) -> Result<Option<(String, Vec<SliceProperty>, T)>, E> {
        zbus::block_on(async {
            let building = self.builder().build();
            let mut building = std::pin::pin!(building);
            // One poll connects and writes the whole handshake (AUTH, BEGIN
            // and Hello go in one write); then `prepare` runs meanwhile.
            let early =
                std::future::poll_fn(|cx| std::task::Poll::Ready(building.as_mut().poll(cx))).await;
            let Some((unit, properties, extra)) = prepare()? else {
                return Ok(None);
            };
            let conn = match early {
                std::task::Poll::Ready(result) => result,
                std::task::Poll::Pending => building.await,
            }
            .map_err(SystemdError::Connect)?;
            let values: Vec<(&str, Value<'_>)> = properties
                .iter()
                .map(|p| {
                    let value = match p.value {
                        PropertyValue::Bool(b) => Value::from(b),
                        PropertyValue::U64(v) => Value::from(v),
                    };
                    (p.name, value)
                })
                .collect();
            run_and_close(conn, async |conn| {
                conn.call_method(
                    Some(SYSTEMD),
                    MANAGER_PATH,
                    Some(MANAGER),
                    "SetUnitProperties",
                    &(unit.as_str(), true, values),
                )
                .await
                .map(|_| ())
                .map_err(call_error("SetUnitProperties"))
            })
            .await?;
            Ok(Some((unit, properties, extra)))
        })
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

    /// Usage and limits of `unit` as systemd sees them.
    pub fn slice_usage(&self, unit: &str) -> Result<SliceUsage, SystemdError> {
        self.with_connection(async |conn| {
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
            })
        })
    }
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
