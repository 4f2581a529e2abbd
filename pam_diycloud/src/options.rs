//! Module arguments from the PAM stack line, e.g.
//! `auth required pam_diycloud.so db=/var/lib/diycloud/diycloud.db debug`.

use std::ffi::CStr;
use std::path::PathBuf;

/// Parsed module arguments. The module never reads environment variables:
/// under `su` or `sudo` they belong to the (untrusted) caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub db: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub debug: bool,
}

impl TryFrom<&[&CStr]> for Options {
    type Error = String;

    fn try_from(args: &[&CStr]) -> Result<Self, String> {
        let mut options = Options::default();
        for arg in args {
            let arg = arg
                .to_str()
                .map_err(|_| "a module argument is not UTF-8".to_owned())?;
            let absolute = |value: &str| {
                let path = PathBuf::from(value);
                if path.is_absolute() {
                    Ok(path)
                } else {
                    Err(format!("module argument {arg:?} needs an absolute path"))
                }
            };
            match arg.split_once('=') {
                Some(("db", value)) => options.db = Some(absolute(value)?),
                Some(("config", value)) => options.config = Some(absolute(value)?),
                // Read by libpam's pam_get_authtok itself.
                Some(("authtok_type", _)) => {}
                None if arg == "debug" => options.debug = true,
                None if matches!(arg, "use_first_pass" | "try_first_pass" | "use_authtok") => {}
                _ => return Err(format!("unknown module argument {arg:?}")),
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&CStr]) -> Result<Options, String> {
        Options::try_from(args)
    }

    #[test]
    fn known_arguments() {
        let o = parse(&[
            c"db=/tmp/x.db",
            c"config=/etc/d.toml",
            c"debug",
            c"use_first_pass",
            c"try_first_pass",
        ])
        .unwrap();
        assert_eq!(o.db, Some(PathBuf::from("/tmp/x.db")));
        assert_eq!(o.config, Some(PathBuf::from("/etc/d.toml")));
        assert!(o.debug);
        assert_eq!(parse(&[]).unwrap(), Options::default());
    }

    #[test]
    fn unknown_or_bad_arguments_are_errors() {
        assert!(parse(&[c"nullok"]).unwrap_err().contains("nullok"));
        assert!(parse(&[c"db=relative.db"])
            .unwrap_err()
            .contains("absolute"));
        assert!(parse(&[c"dbx=/a"]).is_err());
    }
}
