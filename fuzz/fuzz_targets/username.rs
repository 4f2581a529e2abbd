//! Login names: `Username::parse` accepts exactly `[a-z_][a-z0-9_-]*` of at
//! most 32 bytes and keeps the text as given; `parse_new` accepts a subset
//! of that (the reserved system names are refused); a rejected name never
//! ends up whole in the error message.
#![deny(unsafe_code)]
#![no_main]

use libdiycloud::model::{Username, UsernameError};
use libfuzzer_sys::fuzz_target;

/// The rule, written independently of the library.
fn is_portable_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && matches!(b[0], b'a'..=b'z' | b'_')
        && b[1..]
            .iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Longest error text a name may produce: the rule and a quoted cut of at
/// most 40 characters, each escaped to at most 10 bytes (`\u{10ffff}`).
const MAX_ERROR_LEN: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let expected = is_portable_name(input);

    let parsed = Username::parse(input);
    match &parsed {
        Ok(name) => {
            assert!(expected, "accepted {input:?}, which breaks the rule");
            assert_eq!(name.as_str(), input);
            assert_eq!(name.to_string(), input);
            assert_eq!(AsRef::<str>::as_ref(name), input);
            assert!(name.as_str().len() <= 32);
        }
        Err(e) => {
            assert!(!expected, "refused the valid name {input:?}: {e}");
            assert!(
                matches!(e, UsernameError::Invalid { .. }),
                "parse gave {e:?} for {input:?}"
            );
            let text = e.to_string();
            assert!(text.len() <= MAX_ERROR_LEN, "{} bytes of error", text.len());
        }
    }

    match Username::parse_new(input) {
        Ok(name) => {
            assert_eq!(name.as_str(), input);
            assert_eq!(
                parsed.as_ref().ok(),
                Some(&name),
                "parse_new accepts more than parse"
            );
        }
        Err(UsernameError::Reserved(shown)) => {
            assert_eq!(shown, input);
            assert!(parsed.is_ok(), "reserved, yet not a valid name: {input:?}");
        }
        Err(e @ UsernameError::Invalid { .. }) => {
            assert!(
                parsed.is_err(),
                "parse_new refused {input:?} as invalid: {e}"
            );
            assert_eq!(Some(&e), parsed.as_ref().err());
        }
    }
});
