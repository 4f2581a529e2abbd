//! `/etc/diycloud/diycloud.toml`: any text either is refused with a message
//! or gives a config whose every value is usable: argon2 costs within the
//! bounds (a config must never make a login allocate unbounded memory),
//! absolute paths, a PostgreSQL URL without a password, a connect timeout
//! of 1 to 60 s, durations within 100 years, limits in canonical form.
#![deny(unsafe_code)]
#![no_main]

use libdiycloud::config::Config;
use libdiycloud::model::{Cpu, GpuList, Size, Tasks};
use libdiycloud::hashing::{Hasher, MAX_ITERATIONS, MAX_MEMORY_KIB, MAX_PARALLELISM};
use libdiycloud::store::Database;
use libfuzzer_sys::fuzz_target;

fn canonical<T>(value: &T)
where
    T: std::fmt::Display + std::str::FromStr + PartialEq + std::fmt::Debug,
{
    let shown = value.to_string();
    assert_eq!(shown.parse::<T>().ok().as_ref(), Some(value), "{shown:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text) {
        Ok(config) => config,
        Err(message) => {
            assert!(!message.is_empty(), "an empty error for {text:?}");
            return;
        }
    };
    let h = config.hash;
    assert!(h.memory_kib <= MAX_MEMORY_KIB, "{h}");
    assert!(h.iterations <= MAX_ITERATIONS, "{h}");
    assert!(h.parallelism <= MAX_PARALLELISM, "{h}");
    let hasher = Hasher::new(h).unwrap_or_else(|e| panic!("accepted {h}, unusable: {e}"));
    assert_eq!(hasher.params(), h);

    match &config.db {
        Database::Sqlite(path) => assert!(path.is_absolute(), "db {path:?}"),
        Database::Postgres(pg) => {
            // A URL that parses, names a user and a database, holds no password.
            assert!(pg.url.starts_with("postgres"), "db {:?}", pg.url);
            assert!(Database::parse(&pg.url, &config.postgres).is_ok());
        }
    }
    let pg = &config.postgres;
    for path in [&pg.cache, &pg.ca_file]
        .into_iter()
        .chain(pg.password_file.as_ref())
    {
        assert!(path.is_absolute(), "postgres path {path:?}");
    }
    assert!((1..=60).contains(&pg.connect_timeout.as_secs()));
    assert!(config.shell.is_absolute(), "shell {:?}", config.shell);
    let hundred_years = 100 * 365 * 86_400;
    assert!(config.lockout.fail_interval <= hundred_years);
    assert!(config.lockout.unlock_time <= hundred_years);
    let e = &config.events;
    assert!(e.interval <= hundred_years && e.keep <= hundred_years);
    assert!(e.keep > 0 && e.max_rows > 0, "{e:?}");

    let d = &config.defaults;
    canonical::<Cpu>(&d.cpu);
    canonical::<Size>(&d.memory);
    canonical::<Size>(&d.disk);
    canonical::<Tasks>(&d.tasks);
    canonical::<GpuList>(&d.gpus);

    // Parsing has no hidden state.
    assert_eq!(Config::parse(text).ok().as_ref(), Some(&config));
});
