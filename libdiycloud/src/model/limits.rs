//! Resource limits as an admin types them and systemd understands them.
//!
//! Every type here parses from the CLI/config syntax, prints back to the same
//! canonical text (which is what the database stores), and rejects bad input
//! with an error that names the rule.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {rule}")]
pub struct LimitError {
    what: &'static str,
    input: String,
    rule: &'static str,
}

impl LimitError {
    fn new(what: &'static str, input: &str, rule: &'static str) -> Self {
        let mut input = input.to_owned();
        if input.len() > 64 {
            let mut cut = 64;
            while !input.is_char_boundary(cut) {
                cut -= 1;
            }
            input.truncate(cut);
        }
        Self { what, input, rule }
    }
}

const INFINITY: &str = "infinity";

// ---------------------------------------------------------------- sizes

pub const SIZE_RULE: &str = "a size is a positive number with an optional unit K, M, G, T, P or E \
     (base 1024), like 512M, 2G or 1.5T, or 'infinity'";

/// A byte count in systemd's syntax (`512M`, `2G`, `1.5T`, base 1024) or `infinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Bytes(u64),
    Infinity,
}

const UNITS: [(char, u32); 6] = [('K', 1), ('M', 2), ('G', 3), ('T', 4), ('P', 5), ('E', 6)];

impl Size {
    /// The value systemd wants for properties like `MemoryMax` (`u64::MAX` = infinity).
    pub fn as_systemd_u64(self) -> u64 {
        match self {
            Size::Bytes(b) => b,
            Size::Infinity => u64::MAX,
        }
    }
}

impl FromStr for Size {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, LimitError> {
        let err = || LimitError::new("size", s, SIZE_RULE);
        if s == INFINITY {
            return Ok(Size::Infinity);
        }
        let (number, exponent) = match s.chars().last() {
            Some(c) if c.is_ascii_alphabetic() => {
                let (_, exp) = UNITS.iter().find(|(u, _)| *u == c).ok_or_else(err)?;
                (&s[..s.len() - 1], *exp)
            }
            _ => (s, 0),
        };
        let multiplier = 1024u128.pow(exponent);
        let bytes = parse_decimal_scaled(number, multiplier).ok_or_else(err)?;
        match u64::try_from(bytes) {
            Ok(b) if b > 0 && b < u64::MAX => Ok(Size::Bytes(b)),
            _ => Err(err()),
        }
    }
}

/// Parses `123` or `1.5` (digits only, no sign) and multiplies by `multiplier`,
/// rounding down, in exact integer arithmetic.
fn parse_decimal_scaled(number: &str, multiplier: u128) -> Option<u128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits_ok(whole)
        || !digits_ok(frac)
        || whole.len() > 20
        || frac.len() > 18
    {
        return None;
    }
    if number.ends_with('.') {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let mut total = whole.checked_mul(multiplier)?;
    if !frac.is_empty() {
        let scale = 10u128.pow(frac.len() as u32);
        let frac: u128 = frac.parse().ok()?;
        total = total.checked_add(frac.checked_mul(multiplier)? / scale)?;
    }
    Some(total)
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Size::Infinity => f.write_str(INFINITY),
            Size::Bytes(b) => {
                for (unit, exp) in UNITS.iter().rev() {
                    let m = 1024u64.pow(*exp);
                    if b % m == 0 {
                        return write!(f, "{}{unit}", b / m);
                    }
                }
                write!(f, "{b}")
            }
        }
    }
}

// ---------------------------------------------------------------- CPU

pub const CPU_RULE: &str = "CPU is a number of cores greater than 0 with at most 2 decimals \
     (like 1.5), a whole percentage of one core (like 150%), or 'infinity'; at most 4096 cores";

/// A CPU allowance, in hundredths of a core (systemd's `CPUQuota=` granularity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cpu {
    Percent(u32),
    Infinity,
}

const MAX_CPU_PERCENT: u32 = 4096 * 100;

impl Cpu {
    /// `CPUQuotaPerSecUSec`: microseconds of CPU time per second of wall time.
    pub fn quota_per_sec_usec(self) -> u64 {
        match self {
            Cpu::Percent(p) => u64::from(p) * 10_000,
            Cpu::Infinity => u64::MAX,
        }
    }

    /// Cores as a float, for storing in the `cpu_limit REAL` column (`None` = infinity).
    pub fn cores(self) -> Option<f64> {
        match self {
            Cpu::Percent(p) => Some(f64::from(p) / 100.0),
            Cpu::Infinity => None,
        }
    }

    /// The inverse of [`Cpu::cores`]; values come from our own writes, so
    /// rounding to the nearest hundredth is exact.
    pub fn from_cores(cores: Option<f64>) -> Result<Self, LimitError> {
        match cores {
            None => Ok(Cpu::Infinity),
            Some(c) if c.is_finite() && c > 0.0 && c <= f64::from(4096) => {
                Ok(Cpu::Percent((c * 100.0).round() as u32))
            }
            Some(c) => Err(LimitError::new("CPU", &c.to_string(), CPU_RULE)),
        }
    }
}

impl FromStr for Cpu {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, LimitError> {
        let err = || LimitError::new("CPU", s, CPU_RULE);
        if s == INFINITY {
            return Ok(Cpu::Infinity);
        }
        let percent = match s.strip_suffix('%') {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() < 10 => {
                p.parse::<u32>().map_err(|_| err())?
            }
            Some(_) => return Err(err()),
            None => {
                let (_, frac) = s.split_once('.').unwrap_or((s, ""));
                if frac.len() > 2 {
                    return Err(err());
                }
                let hundredths = parse_decimal_scaled(s, 100).ok_or_else(err)?;
                u32::try_from(hundredths).map_err(|_| err())?
            }
        };
        if percent == 0 || percent > MAX_CPU_PERCENT {
            return Err(err());
        }
        Ok(Cpu::Percent(percent))
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cpu::Infinity => f.write_str(INFINITY),
            Cpu::Percent(p) if p % 100 == 0 => write!(f, "{}", p / 100),
            Cpu::Percent(p) if p % 10 == 0 => write!(f, "{}.{}", p / 100, (p % 100) / 10),
            Cpu::Percent(p) => write!(f, "{}.{:02}", p / 100, p % 100),
        }
    }
}

// ---------------------------------------------------------------- tasks

pub const TASKS_RULE: &str =
    "tasks is a whole number of processes and threads from 1 to 4294967295, or 'infinity'";

/// The most processes and threads a user may run at once (`TasksMax`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tasks {
    Count(u32),
    Infinity,
}

impl Tasks {
    pub fn as_systemd_u64(self) -> u64 {
        match self {
            Tasks::Count(n) => u64::from(n),
            Tasks::Infinity => u64::MAX,
        }
    }
}

impl FromStr for Tasks {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, LimitError> {
        if s == INFINITY {
            return Ok(Tasks::Infinity);
        }
        match s.parse::<u32>() {
            Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Tasks::Count(n)),
            _ => Err(LimitError::new("tasks", s, TASKS_RULE)),
        }
    }
}

impl fmt::Display for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tasks::Count(n) => write!(f, "{n}"),
            Tasks::Infinity => f.write_str(INFINITY),
        }
    }
}

// ---------------------------------------------------------------- weights

pub const WEIGHT_RULE: &str =
    "a weight is a whole number from 1 to 10000; 100 is everyone's default share";

/// A relative share of a contended resource (`CPUWeight`, `IOWeight`): a
/// slice of weight 300 gets three times what one of 100 gets while both
/// want more, and all of it while alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Weight(u16);

impl Weight {
    pub const DEFAULT: Weight = Weight(100);
    const MAX: u16 = 10_000;

    pub fn get(self) -> u16 {
        self.0
    }

    /// cgroup v1's `cpu.shares` for it, as systemd converts `CPUWeight`
    /// (`CPUShares`, default 1024): weight x 1024 / 100.
    pub fn cpu_shares(self) -> u64 {
        u64::from(self.0) * 1024 / 100
    }

    /// cgroup v1's `blkio.weight` for it (`BlockIOWeight`): the same number,
    /// clamped to v1's range 10..1000, so users' weights keep their ratios
    /// to one another (they share `user.slice`, where only theirs compete);
    /// `clamped` where the range cut it.
    pub fn block_io_weight(self) -> (u64, bool) {
        let weight = u64::from(self.0);
        let clamped = weight.clamp(10, 1000);
        (clamped, clamped != weight)
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for Weight {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, LimitError> {
        match s.parse::<u16>() {
            Ok(n) if (1..=Self::MAX).contains(&n) && s.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Weight(n))
            }
            _ => Err(LimitError::new("weight", s, WEIGHT_RULE)),
        }
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// ---------------------------------------------------------------- GPUs

pub const GPU_RULE: &str = "a GPU list is 'none', 'all', or a comma-separated list without \
     repeats of GPU indices (0-1023), GPU UUIDs (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx) and \
     MIG instances (MIG-GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx/GI/CI, as `slicectl gpu list` \
     shows them)";

/// Which GPUs a user may open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuList {
    None,
    All,
    Some(Vec<GpuId>),
}

/// One GPU named by its index or its UUID, or one MIG instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuId {
    Index(u16),
    /// `GPU-...`, or a MIG UUID (`MIG-...`), which parses (older records
    /// may hold one) but cannot be granted: see [`GpuId::Mig`].
    Uuid(String),
    /// A MIG instance by NVIDIA's location name, `MIG-GPU-UUID/GI/CI`: its
    /// GPU, GPU instance and compute instance, all of which the driver's
    /// procfs shows, so a session can resolve it without NVML.
    Mig {
        gpu: String,
        gi: u8,
        ci: u8,
    },
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl FromStr for GpuId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        if let Some((gpu, rest)) = s
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("MIG-GPU-"))
            .and_then(|_| s[4..].split_once('/'))
        {
            let Ok(GpuId::Uuid(gpu)) = gpu.parse() else {
                return Err(());
            };
            let (gi, ci) = rest.split_once('/').ok_or(())?;
            let number = |t: &str| -> Result<u8, ()> {
                if t.is_empty() || t.len() > 3 || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(());
                }
                t.parse().map_err(|_| ())
            };
            return Ok(GpuId::Mig {
                gpu,
                gi: number(gi)?,
                ci: number(ci)?,
            });
        }
        // NVML spells UUIDs "GPU-" + lower-case hex; the same GPU typed in
        // another case is the same GPU, so it is stored in NVML's spelling.
        let prefix = s.get(..4).map(str::to_ascii_uppercase);
        if let Some(prefix @ ("GPU-" | "MIG-")) = prefix.as_deref() {
            let uuid = &s[4..];
            return if is_uuid(uuid) {
                Ok(GpuId::Uuid(format!(
                    "{prefix}{}",
                    uuid.to_ascii_lowercase()
                )))
            } else {
                Err(())
            };
        }
        match s.parse::<u16>() {
            Ok(i) if i < 1024 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(GpuId::Index(i)),
            _ => Err(()),
        }
    }
}

impl fmt::Display for GpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuId::Index(i) => write!(f, "{i}"),
            GpuId::Uuid(u) => f.write_str(u),
            GpuId::Mig { gpu, gi, ci } => write!(f, "MIG-{gpu}/{gi}/{ci}"),
        }
    }
}

impl FromStr for GpuList {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, LimitError> {
        let err = || LimitError::new("GPU list", s, GPU_RULE);
        match s {
            "none" => return Ok(GpuList::None),
            "all" => return Ok(GpuList::All),
            _ => {}
        }
        let mut ids: Vec<GpuId> = Vec::new();
        for item in s.split(',') {
            let id: GpuId = item.trim().parse().map_err(|_| err())?;
            if ids.contains(&id) {
                return Err(err());
            }
            ids.push(id);
        }
        Ok(GpuList::Some(ids))
    }
}

impl fmt::Display for GpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuList::None => f.write_str("none"),
            GpuList::All => f.write_str("all"),
            GpuList::Some(ids) => {
                let parts: Vec<String> = ids.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

// ---------------------------------------------------------------- the limits

/// The cgroup version of the node's controllers (cgroup v1 with systemd's
/// v2 tree beside it, "hybrid", counts as v1): the weights have other
/// properties there, and
/// so does a limit's property ([`Allocation::slice_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// One limit as every door names it: the table below ([`LIMITS`]) is the one
/// place that lists them. `Allocation`, `LimitChanges`, the slice's
/// properties, the store's mapping, the config's `[defaults]`, the CLI's
/// flags, the API's fields and schema and the portal's form come from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Its name in the database, the config's `[defaults]`, the API, the
    /// portal's form, the audit log and the user's view (`memory_high`).
    pub key: &'static str,
    /// The CLI's flag, without the dashes (`memory-high`).
    pub flag: &'static str,
    /// The CLI's name for its value (`SIZE`).
    pub value_name: &'static str,
    /// Its name for people, in tables and on the portal (`Soft memory`).
    pub label: &'static str,
    /// A value to show as an example in a form (`6G`).
    pub example: &'static str,
    /// Whether user lists (`slicectl user list`, the portal's) show it.
    pub listed: bool,
    /// What it is, for `--help` and the API's schema.
    pub help: &'static str,
    /// The syntax its values take (the type's rule), for the schema.
    pub syntax: &'static str,
    /// Whether JSON and TOML may give it as a number, and which.
    pub number: Number,
    /// The systemd property it sets on the user's slice, on cgroup v2 and
    /// v1 (`None`: not a slice property: the disk quota, GPU devices).
    pub v2: Option<&'static str>,
    pub v1: Option<&'static str>,
}

/// Whether a limit may be written as a JSON or TOML number besides its
/// text (`"cpu": 1.5`), and as which JSON Schema type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    /// Text only (a GPU list).
    No,
    /// A whole number (weights).
    Integer,
    /// Any number (cores, bytes, tasks).
    Any,
}

impl Number {
    /// What a value of such a limit may be, for an error about one that is
    /// neither (`"gpus": true`).
    pub fn expected(self) -> &'static str {
        match self {
            Number::No => "a text",
            Number::Integer | Number::Any => "a text or a number",
        }
    }

    /// The JSON Schema type of the numbers it takes.
    pub fn schema_type(self) -> Option<&'static str> {
        match self {
            Number::No => None,
            Number::Integer => Some("integer"),
            Number::Any => Some("number"),
        }
    }
}

/// A limit's value as a request or a config file wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    Text(&'a str),
    Integer(i64),
    Float(f64),
}

impl Limit {
    /// The limit whose key is `key`.
    pub fn by_key(key: &str) -> Option<&'static Limit> {
        LIMITS.iter().find(|l| l.key == key)
    }

    /// The text of `value` for this limit, to parse by its type's rule;
    /// `Err`: a number where it takes only text.
    pub fn text_of(&self, value: Scalar<'_>) -> Result<String, String> {
        match value {
            Scalar::Text(text) => Ok(text.to_owned()),
            Scalar::Integer(_) | Scalar::Float(_) if self.number == Number::No => {
                Err(format!("{}: give it as a text ({})", self.key, self.syntax))
            }
            Scalar::Integer(n) => Ok(n.to_string()),
            // Rust prints 2.0 as "2", which every integer rule takes.
            Scalar::Float(x) => Ok(x.to_string()),
        }
    }
}

/// A limit's value type: parsed from and shown as its canonical text (what
/// the database stores), shown in JSON as text unless it is a number.
pub trait LimitValue: std::str::FromStr<Err = LimitError> + fmt::Display + Clone {
    /// Whether requests and config files may give it as a number.
    const NUMBER: Number = Number::Any;

    fn json(&self) -> serde_json::Value {
        serde_json::Value::String(self.to_string())
    }
}

impl LimitValue for Cpu {}
impl LimitValue for Size {}
impl LimitValue for Tasks {}
impl LimitValue for GpuList {
    const NUMBER: Number = Number::No;
}
impl LimitValue for Weight {
    const NUMBER: Number = Number::Integer;

    /// Weights are numbers in the user's view and the audit log.
    fn json(&self) -> serde_json::Value {
        serde_json::Value::from(self.get())
    }
}

/// A limit's text that breaks its rule, with the limit's key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {error}")]
pub struct LimitTextError {
    pub key: &'static str,
    pub error: LimitError,
}

/// Declares the limits: for each, its field and type, its built-in
/// default, its [`Limit`] facts and the systemd properties it sets (a
/// function of its value per cgroup version). A macro rather than a table
/// of trait objects: each limit keeps its own type (and with it its rule,
/// in its `FromStr`), and what is generated is plain struct code.
macro_rules! limits {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $default:expr, flag $flag:literal, value $value:literal,
            label $label:literal, example $example:literal, listed $listed:literal,
            help $help:literal, syntax $syntax:expr
        $(, v2 $v2:literal => $v2value:expr)?
        $(, v1 $v1:literal => $v1value:expr)?
        ;
    )*) => {
        /// Everything a user is allowed: what session open will apply.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Allocation {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for Allocation {
            /// The built-in defaults for new users (DESIGN §5).
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        /// Some of an allocation's limits, to change: `None` keeps a limit.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct LimitChanges {
            $( pub $field: Option<$ty>, )*
        }

        /// Every limit, in the order the doors list them.
        pub const LIMITS: &[Limit] = &[
            $( Limit {
                key: stringify!($field),
                flag: $flag,
                value_name: $value,
                label: $label,
                example: $example,
                listed: $listed,
                help: $help,
                syntax: $syntax,
                number: <$ty as LimitValue>::NUMBER,
                v2: limits!(@name $($v2)?),
                v1: limits!(@name $($v1)?),
            }, )*
        ];

        impl Allocation {
            /// Each limit's key and canonical text, in [`LIMITS`]' order.
            pub fn texts(&self) -> Vec<(&'static str, String)> {
                vec![ $( (stringify!($field), self.$field.to_string()), )* ]
            }

            /// Each limit's key and value as JSON, in [`LIMITS`]' order.
            pub fn json(&self) -> Vec<(&'static str, serde_json::Value)> {
                vec![ $( (stringify!($field), LimitValue::json(&self.$field)), )* ]
            }

            /// Sets the limit `key` from its text; `Ok(false)`: no such limit.
            pub fn set_text(&mut self, key: &str, text: &str) -> Result<bool, LimitTextError> {
                match key {
                    $( stringify!($field) => {
                        self.$field = text.parse().map_err(|error| LimitTextError {
                            key: stringify!($field),
                            error,
                        })?;
                    } )*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// The slice properties of the limits that are slice
            /// properties, for cgroup `version`, in [`LIMITS`]' order.
            pub fn slice_limits(&self, version: CgroupVersion) -> Vec<(&'static str, u64)> {
                let mut properties = Vec::new();
                $( limits!(@property properties, version, self.$field, $ty $(, $v2 => $v2value)? $(; $v1 => $v1value)?); )*
                properties
            }
        }

        impl LimitChanges {
            pub fn is_empty(&self) -> bool {
                *self == Self::default()
            }

            /// `allocation` with these changes.
            pub fn applied_to(&self, allocation: &Allocation) -> Allocation {
                let mut changed = allocation.clone();
                $( if let Some(value) = &self.$field {
                    changed.$field = value.clone();
                } )*
                changed
            }

            /// Sets the change of limit `key` from its text; `Ok(false)`:
            /// no such limit.
            pub fn set_text(&mut self, key: &str, text: &str) -> Result<bool, LimitTextError> {
                match key {
                    $( stringify!($field) => {
                        self.$field = Some(text.parse().map_err(|error| LimitTextError {
                            key: stringify!($field),
                            error,
                        })?);
                    } )*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// The changed limits' keys and canonical texts, in [`LIMITS`]' order.
            pub fn texts(&self) -> Vec<(&'static str, String)> {
                let mut texts = Vec::new();
                $( if let Some(value) = &self.$field {
                    texts.push((stringify!($field), value.to_string()));
                } )*
                texts
            }

            /// The changed limits' keys and values as JSON, in [`LIMITS`]' order.
            pub fn json(&self) -> Vec<(&'static str, serde_json::Value)> {
                let mut values = Vec::new();
                $( if let Some(value) = &self.$field {
                    values.push((stringify!($field), LimitValue::json(value)));
                } )*
                values
            }
        }
    };
    (@name) => { None };
    (@name $name:literal) => { Some($name) };
    (@property $out:ident, $version:ident, $value:expr, $ty:ty) => {};
    (@property $out:ident, $version:ident, $value:expr, $ty:ty, $v2:literal => $v2value:expr $(; $v1:literal => $v1value:expr)?) => {
        match $version {
            CgroupVersion::V2 => {
                let value: fn(&$ty) -> u64 = $v2value;
                $out.push(($v2, value(&$value)));
            }
            CgroupVersion::V1 => {
                $( let value: fn(&$ty) -> u64 = $v1value;
                $out.push(($v1, value(&$value))); )?
            }
        }
    };
}

limits! {
    /// CPU time, in cores (`CPUQuota`).
    cpu: Cpu = Cpu::Percent(100), flag "cpu", value "CORES",
        label "CPU", example "2 or 150%", listed true,
        help "CPU: cores (1.5), percent of one core (150%) or infinity", syntax CPU_RULE,
        v2 "CPUQuotaPerSecUSec" => |c| c.quota_per_sec_usec(),
        v1 "CPUQuotaPerSecUSec" => |c| c.quota_per_sec_usec();
    /// Memory, the hard limit (`MemoryMax`): past it the OOM killer acts.
    memory: Size = Size::Bytes(2 << 30), flag "memory", value "SIZE",
        label "Memory", example "8G", listed true,
        help "Memory: 512M, 2G, 1.5T (base 1024) or infinity", syntax SIZE_RULE,
        v2 "MemoryMax" => |m| m.as_systemd_u64(),
        v1 "MemoryMax" => |m| m.as_systemd_u64();
    /// The soft memory limit (`MemoryHigh`): above it the kernel reclaims
    /// and slows the slice down; `memory` still kills.
    memory_high: Size = Size::Infinity, flag "memory-high", value "SIZE",
        label "Soft memory", example "6G, at most Memory", listed false,
        help "Soft memory limit: above it the kernel reclaims and slows the user's processes instead of killing them (--memory still kills). At most --memory; infinity for none. MemoryHigh; cgroup v2 only", syntax SIZE_RULE,
        v2 "MemoryHigh" => |m| m.as_systemd_u64(),
        v1 "MemoryHigh" => |m| m.as_systemd_u64();
    /// The disk quota on each configured filesystem.
    disk: Size = Size::Bytes(5 << 30), flag "disk", value "SIZE",
        label "Disk", example "50G", listed true,
        help "Disk quota on each [quota] filesystem: 512M, 5G, 1T (base 1024; rounded up to KiB) or infinity", syntax SIZE_RULE;
    /// Processes and threads (`TasksMax`).
    tasks: Tasks = Tasks::Count(4096), flag "tasks", value "N",
        label "Tasks", example "4096", listed true,
        help "Most processes and threads at once, or infinity", syntax TASKS_RULE,
        v2 "TasksMax" => |t| t.as_systemd_u64(),
        v1 "TasksMax" => |t| t.as_systemd_u64();
    /// The GPUs granted (device access).
    gpus: GpuList = GpuList::None, flag "gpus", value "LIST",
        label "GPUs", example "none, all or 0,1", listed true,
        help "GPUs: none, all, or a list of indices, GPU-UUIDs and MIG instances (MIG-GPU-UUID/GI/CI), as `slicectl gpu list` shows them", syntax GPU_RULE;
    /// The share of contended CPU time (`CPUWeight`).
    cpu_weight: Weight = Weight::DEFAULT, flag "cpu-weight", value "WEIGHT",
        label "CPU weight", example "100 (the usual) or 300", listed false,
        help "Share of contended CPU time, 1..10000 (100 is everyone's default; 300 gets three times what 100 gets while both are busy, and the whole machine while alone). CPUWeight; on cgroup v1 CPUShares = weight x 1024 / 100", syntax WEIGHT_RULE,
        v2 "CPUWeight" => |w| w.get().into(),
        v1 "CPUShares" => |w| w.cpu_shares();
    /// The share of contended disk time (`IOWeight`).
    io_weight: Weight = Weight::DEFAULT, flag "io-weight", value "WEIGHT",
        label "IO weight", example "100 (the usual)", listed false,
        help "Share of contended disk time, 1..10000 (default 100). IOWeight; on cgroup v1 BlockIOWeight, clamped to 10..1000. Only I/O schedulers with weights honour it (BFQ, or the io.cost controller)", syntax WEIGHT_RULE,
        v2 "IOWeight" => |w| w.get().into(),
        v1 "BlockIOWeight" => |w| w.block_io_weight().0;
}

/// The user's view and the audit log show an allocation as one key per
/// limit, in [`LIMITS`]' order.
impl serde::Serialize for Allocation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let values = self.json();
        let mut map = serializer.serialize_map(Some(values.len()))?;
        for (key, value) in &values {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl Allocation {
    /// Each limit with its canonical text, in [`LIMITS`]' order: what a
    /// door shows under the limit's label.
    pub fn limit_texts(&self) -> impl Iterator<Item = (&'static Limit, String)> {
        // `texts` and `LIMITS` come from the same list, in its order.
        LIMITS.iter().zip(self.texts()).map(|(limit, (key, text))| {
            debug_assert_eq!(limit.key, key);
            (limit, text)
        })
    }
}

impl LimitChanges {
    /// Sets the change of `limit` from a value as a request (an API body,
    /// a portal form) or a config file (`[defaults]`) wrote it.
    pub fn set_scalar(&mut self, limit: &Limit, value: Scalar<'_>) -> Result<(), String> {
        let text = limit.text_of(value)?;
        self.set_text(limit.key, &text)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

pub const MEMORY_HIGH_RULE: &str = "memory-high (the soft limit, MemoryHigh) must not exceed \
     memory (the hard limit, MemoryMax)";

/// The largest disk quota a user quota can hold, in bytes: 2^53 - 1 quota
/// blocks of 1 KiB (8E less 1K). The kernel holds space limits as signed
/// 64-bit byte counts: ext4's quota format (vfsv1, which its `quota` feature
/// uses) refuses more than 2^63 - 1 bytes with ERANGE, and quotactl's
/// `Q_SETQUOTA` turns the 1 KiB blocks into bytes in that signed type, so
/// above this a limit wraps (XFS, whose own counts are 64-bit filesystem
/// blocks, would get a wrapped limit, or none). The old vfsv0 quota files
/// hold at most 2^32 - 1 blocks (4T less 1K): such a filesystem refuses
/// more when the limit is applied, and says so.
pub const MAX_DISK_BYTES: u64 = ((1 << 53) - 1) * 1024;

pub const DISK_RULE: &str = "disk must be less than 8E (at most 2^53 - 1 quota blocks of 1K, \
     8E less 1K: the most the kernel's user quotas hold, in ext4's vfsv1 quota format and on \
     XFS; old vfsv0 quota files hold at most 4T less 1K), or 'infinity' for no quota";

/// An allocation whose limits contradict one another, or exceed what the
/// kernel can enforce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("memory-high {memory_high} is above memory {memory}: {MEMORY_HIGH_RULE}")]
    MemoryHighAboveMemory { memory_high: Size, memory: Size },
    #[error("disk {disk} is too large: {DISK_RULE}")]
    DiskTooLarge { disk: Size },
}

impl Allocation {
    /// The rules between limits, and the bounds of what the kernel
    /// enforces that a type alone does not carry (the disk quota's).
    /// Checked where an allocation is granted (`add`, `mod`, the config's
    /// defaults), never at login: a record granted before keeps working
    /// as far as the kernel takes it.
    pub fn check(&self) -> Result<(), AllocationError> {
        let above = match (self.memory_high, self.memory) {
            (Size::Bytes(high), Size::Bytes(max)) => high > max,
            (Size::Infinity, Size::Bytes(_)) | (_, Size::Infinity) => false,
        };
        if above {
            return Err(AllocationError::MemoryHighAboveMemory {
                memory_high: self.memory_high,
                memory: self.memory,
            });
        }
        if matches!(self.disk, Size::Bytes(b) if b > MAX_DISK_BYTES) {
            return Err(AllocationError::DiskTooLarge { disk: self.disk });
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- warnings

/// Below this, a session's shell and sshd children are likely OOM-killed.
const LOW_MEMORY: u64 = 64 << 20;
/// Below this, a login (sshd, shell, a pipe or two) may fail to fork.
const LOW_TASKS: u32 = 16;
/// Below this share of one core, interactive use crawls.
const LOW_CPU_PERCENT: u32 = 5;

impl LimitChanges {
    /// Values that are valid but probably a mistake (see [`warnings`]).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = warnings(self.cpu, self.memory, self.tasks, self.disk);
        if let Some(Size::Bytes(b)) = self
            .memory_high
            .filter(|m| matches!(m, Size::Bytes(b) if *b < LOW_MEMORY))
        {
            out.push(format!(
                "memory-high {} is below 64M: every session will crawl, reclaimed and throttled at once (sizes without a unit are bytes)",
                Size::Bytes(b)
            ));
        }
        out
    }
}

/// Values that are valid but almost surely a mistake (`--memory 1` is one
/// byte): warnings for the admin, who may mean them anyway.
fn warnings(
    cpu: Option<Cpu>,
    memory: Option<Size>,
    tasks: Option<Tasks>,
    disk: Option<Size>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(Cpu::Percent(p)) =
        cpu.filter(|c| matches!(c, Cpu::Percent(p) if *p < LOW_CPU_PERCENT))
    {
        out.push(format!(
            "CPU {p}% of one core is very little: interactive use will crawl"
        ));
    }
    if let Some(Size::Bytes(b)) = memory.filter(|m| matches!(m, Size::Bytes(b) if *b < LOW_MEMORY))
    {
        out.push(format!(
            "memory {} is below 64M: a login shell is likely to be OOM-killed at once (sizes without a unit are bytes)",
            Size::Bytes(b)
        ));
    }
    if let Some(Tasks::Count(n)) = tasks.filter(|t| matches!(t, Tasks::Count(n) if *n < LOW_TASKS))
    {
        out.push(format!(
            "tasks {n} is below 16: a login (sshd, the shell, a pipe) may fail to start processes"
        ));
    }
    if let Some(Size::Bytes(b)) = disk.filter(|d| matches!(d, Size::Bytes(b) if *b < (1 << 20))) {
        out.push(format!(
            "disk {} is below 1M: the user can hardly write anything (sizes without a unit are bytes)",
            Size::Bytes(b)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_limits_warn_and_sane_ones_do_not() {
        let w = warnings(
            Some("1%".parse().unwrap()),
            Some("1".parse().unwrap()),
            Some("1".parse().unwrap()),
            Some("100".parse().unwrap()),
        );
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(w[1].contains("memory 1 "), "{w:?}");
        assert!(warnings(
            Some("0.5".parse().unwrap()),
            Some("64M".parse().unwrap()),
            Some("16".parse().unwrap()),
            Some(Size::Infinity),
        )
        .is_empty());
        assert!(warnings(None, None, None, None).is_empty());
    }

    #[test]
    fn sizes_parse_in_base_1024_and_print_canonically() {
        let cases = [
            ("512M", 512 << 20, "512M"),
            ("2G", 2 << 30, "2G"),
            ("1.5T", 3 << 39, "1536G"),
            ("1024", 1024, "1K"),
            ("1000", 1000, "1000"),
            ("0.5K", 512, "512"),
            ("15E", 15 << 60, "15E"),
        ];
        for (input, bytes, shown) in cases {
            let size: Size = input.parse().unwrap();
            assert_eq!(size, Size::Bytes(bytes), "{input}");
            assert_eq!(size.to_string(), shown);
            assert_eq!(shown.parse::<Size>().unwrap(), size, "round trip {shown}");
        }
        assert_eq!(
            "infinity".parse::<Size>().unwrap().as_systemd_u64(),
            u64::MAX
        );
    }

    #[test]
    fn bad_sizes_name_the_rule() {
        for input in [
            "2Q",
            "-1G",
            "",
            "G",
            "0",
            "0M",
            "1.G",
            ".5G",
            "1,5G",
            "16E",
            "2g",
            "1e3",
            " 2G",
            "99999999999999999999999G",
        ] {
            let err = input.parse::<Size>().unwrap_err().to_string();
            assert!(err.contains("K, M, G, T, P or E"), "{input}: {err}");
        }
    }

    #[test]
    fn cpu_accepts_cores_and_percent() {
        let cases = [
            ("1.5", 150, "1.5"),
            ("150%", 150, "1.5"),
            ("0.25", 25, "0.25"),
            ("2", 200, "2"),
            ("5%", 5, "0.05"),
            ("4096", 409_600, "4096"),
        ];
        for (input, pct, shown) in cases {
            let cpu: Cpu = input.parse().unwrap();
            assert_eq!(cpu, Cpu::Percent(pct), "{input}");
            assert_eq!(cpu.to_string(), shown);
            assert_eq!(Cpu::from_cores(cpu.cores()).unwrap(), cpu);
        }
        assert_eq!(
            "1.5".parse::<Cpu>().unwrap().quota_per_sec_usec(),
            1_500_000
        );
        assert_eq!("infinity".parse::<Cpu>().unwrap().cores(), None);
    }

    #[test]
    fn bad_cpu_names_the_rule() {
        for input in [
            "0", "0%", "-1", "1.555", "abc", "", "%", "1.5%", "4097", "1e2", "NaN", "inf",
        ] {
            let err = input.parse::<Cpu>().unwrap_err().to_string();
            assert!(err.contains("number of cores"), "{input}: {err}");
        }
    }

    #[test]
    fn tasks_parse() {
        assert_eq!("4096".parse::<Tasks>().unwrap(), Tasks::Count(4096));
        assert_eq!(
            "infinity".parse::<Tasks>().unwrap().as_systemd_u64(),
            u64::MAX
        );
        for input in ["0", "-5", "+5", "1.5", "4294967296", "lots"] {
            let err = input.parse::<Tasks>().unwrap_err().to_string();
            assert!(err.contains("whole number"), "{input}: {err}");
        }
    }

    #[test]
    fn gpu_lists() {
        let uuid = "GPU-8f6a2c1e-1111-2222-3333-444455556666";
        let list: GpuList = format!("0,{uuid},3").parse().unwrap();
        assert_eq!(
            list,
            GpuList::Some(vec![
                GpuId::Index(0),
                GpuId::Uuid(uuid.into()),
                GpuId::Index(3)
            ])
        );
        assert_eq!(list.to_string(), format!("0,{uuid},3"));
        assert_eq!("none".parse::<GpuList>().unwrap(), GpuList::None);
        assert_eq!("all".parse::<GpuList>().unwrap(), GpuList::All);
        for input in [
            "", "0,0", "gpu0", "-1", "1024", "all,0", "0,", "GPU-xyz", "0;1", "MIG-1234",
        ] {
            let err = input.parse::<GpuList>().unwrap_err().to_string();
            assert!(err.contains("'none', 'all'"), "{input}: {err}");
        }
    }

    #[test]
    fn mig_instances_by_location() {
        let list: GpuList = "1,mig-gpu-8F6A2C1E-1111-2222-3333-44445555AAAA/13/0"
            .parse()
            .unwrap();
        assert_eq!(
            list,
            GpuList::Some(vec![
                GpuId::Index(1),
                GpuId::Mig {
                    gpu: "GPU-8f6a2c1e-1111-2222-3333-44445555aaaa".into(),
                    gi: 13,
                    ci: 0
                }
            ])
        );
        assert_eq!(
            list.to_string(),
            "1,MIG-GPU-8f6a2c1e-1111-2222-3333-44445555aaaa/13/0",
            "stored in NVIDIA's spelling"
        );
        let gpu = "GPU-8f6a2c1e-1111-2222-3333-44445555aaaa";
        for bad in [
            format!("MIG-{gpu}"),
            format!("MIG-{gpu}/1"),
            format!("MIG-{gpu}/1/"),
            format!("MIG-{gpu}//0"),
            format!("MIG-{gpu}/1/0/2"),
            format!("MIG-{gpu}/256/0"),
            format!("MIG-{gpu}/-1/0"),
            format!("MIG-{gpu}/+1/0"),
            format!("MIG-{gpu}/1/0x1"),
            "MIG-GPU-xyz/1/0".to_string(),
            format!("MIG-{gpu}/1/0,MIG-{gpu}/1/0"),
        ] {
            assert!(bad.parse::<GpuList>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_uuid_in_another_case_is_the_same_gpu() {
        let lower = "GPU-8f6a2c1e-1111-2222-3333-44445555aaaa";
        let upper = "gpu-8F6A2C1E-1111-2222-3333-44445555AAAA";
        assert_eq!(upper.parse::<GpuList>().unwrap().to_string(), lower);
        assert!(format!("{lower},{upper}").parse::<GpuList>().is_err());
        assert!("MIG-8F6A2C1E-1111-2222-3333-44445555AAAA"
            .parse::<GpuList>()
            .unwrap()
            .to_string()
            .starts_with("MIG-8f6a"));
    }

    #[test]
    fn weights_parse_and_map_to_cgroup_v1() {
        assert_eq!("100".parse::<Weight>().unwrap(), Weight::DEFAULT);
        assert_eq!("1".parse::<Weight>().unwrap().get(), 1);
        assert_eq!("10000".parse::<Weight>().unwrap().to_string(), "10000");
        for input in [
            "0", "10001", "-1", "+5", "1.5", "", "100%", "65536", " 100", "lots",
        ] {
            let err = input.parse::<Weight>().unwrap_err().to_string();
            assert!(err.contains("from 1 to 10000"), "{input}: {err}");
        }
        // CPUShares: the default 1024 at the default weight.
        assert_eq!(Weight::DEFAULT.cpu_shares(), 1024);
        assert_eq!(Weight(300).cpu_shares(), 3072);
        assert_eq!(Weight(1).cpu_shares(), 10);
        assert_eq!(Weight(10_000).cpu_shares(), 102_400);
        // BlockIOWeight: the same number within 10..1000.
        assert_eq!(Weight(300).block_io_weight(), (300, false));
        assert_eq!(Weight(10).block_io_weight(), (10, false));
        assert_eq!(Weight(1000).block_io_weight(), (1000, false));
        assert_eq!(Weight(5).block_io_weight(), (10, true));
        assert_eq!(Weight(5000).block_io_weight(), (1000, true));
    }

    #[test]
    fn the_soft_memory_limit_stays_under_the_hard_one() {
        let with = |high: &str, max: &str| Allocation {
            memory_high: high.parse().unwrap(),
            memory: max.parse().unwrap(),
            ..Allocation::default()
        };
        assert!(with("128M", "512M").check().is_ok());
        assert!(with("512M", "512M").check().is_ok());
        assert!(with("infinity", "512M").check().is_ok());
        assert!(with("4G", "infinity").check().is_ok());
        assert!(with("infinity", "infinity").check().is_ok());
        assert!(Allocation::default().check().is_ok());
        let err = with("600M", "512M").check().unwrap_err().to_string();
        assert_eq!(
            err,
            "memory-high 600M is above memory 512M: memory-high (the soft limit, MemoryHigh) \
             must not exceed memory (the hard limit, MemoryMax)"
        );
    }

    #[test]
    fn a_disk_quota_stays_within_what_the_kernel_holds() {
        let with = |disk: &str| Allocation {
            disk: disk.parse().unwrap(),
            ..Allocation::default()
        };
        for fine in ["5G", "4T", "8191P", "infinity"] {
            assert!(with(fine).check().is_ok(), "{fine}");
        }
        // The bound itself, a whole number of quota blocks, and one byte
        // over (its block count rounds up past the bound).
        let at = Allocation {
            disk: Size::Bytes(MAX_DISK_BYTES),
            ..Allocation::default()
        };
        assert!(at.check().is_ok());
        assert_eq!(
            crate::model::quota::blocks_for(at.disk),
            (1 << 53) - 1,
            "2^53 - 1 blocks of 1K"
        );
        let over = Allocation {
            disk: Size::Bytes(MAX_DISK_BYTES + 1),
            ..Allocation::default()
        };
        assert!(over.check().is_err());
        for too_big in ["8E", "15E", "9000P"] {
            let err = with(too_big).check().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("disk {too_big} is too large")),
                "{too_big}: {err}"
            );
            assert!(
                err.contains("less than 8E") && err.contains("vfsv1"),
                "{err}"
            );
        }
        // Memory has no such bound: 15E is a valid MemoryMax.
        let memory = Allocation {
            memory: "15E".parse().unwrap(),
            ..Allocation::default()
        };
        assert!(memory.check().is_ok());
    }

    #[test]
    fn a_tiny_soft_memory_limit_warns() {
        let changes = LimitChanges {
            memory_high: Some("1M".parse().unwrap()),
            ..LimitChanges::default()
        };
        let w = changes.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("memory-high 1M is below 64M"), "{w:?}");
        let fine = LimitChanges {
            memory_high: Some("128M".parse().unwrap()),
            cpu_weight: Some(Weight(1)),
            ..LimitChanges::default()
        };
        assert!(fine.warnings().is_empty());
    }

    #[test]
    fn changes_apply_the_new_fields() {
        let changes = LimitChanges {
            cpu_weight: Some(Weight(300)),
            io_weight: Some(Weight(50)),
            memory_high: Some("1G".parse().unwrap()),
            ..LimitChanges::default()
        };
        let changed = changes.applied_to(&Allocation::default());
        assert_eq!(changed.cpu_weight, Weight(300));
        assert_eq!(changed.io_weight, Weight(50));
        assert_eq!(changed.memory_high, Size::Bytes(1 << 30));
        assert_eq!(changed.cpu, Allocation::default().cpu);
    }

    #[test]
    fn huge_input_is_cut_in_the_message() {
        let err = "9".repeat(1 << 20).parse::<Size>().unwrap_err().to_string();
        assert!(err.len() < 400);
    }
}
