//! Free text that ends up in records, `/etc/passwd` and terminals (full
//! names, e-mail addresses): one line, bounded, nothing that can hide or
//! reorder what an admin reads.

/// Characters that are not control characters (`char::is_control` covers
/// those) but still change how text looks: bidirectional overrides and
/// isolates (U+202E makes "alice" print as "ecila"), zero-width characters,
/// line and paragraph separators, the soft hyphen, the BOM.
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{2028}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
];

fn is_invisible(c: char) -> bool {
    c.is_control() || INVISIBLE.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

/// An e-mail address as a record keeps it (empty: none). The check every
/// front door makes (`--email`, the API's `email`).
pub fn email(s: &str) -> Result<(), String> {
    check_line(s, "an e-mail address", 254, &[' '])?;
    if !s.is_empty()
        && !s
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
    {
        return Err("an e-mail address looks like name@example.org".into());
    }
    Ok(())
}

/// A full name (empty: none): it becomes the comment (GECOS) field of the
/// passwd line `usermod --comment` writes, where ':' ends the field and ','
/// ends the name (the rest reads as office, phone numbers, `finger` and
/// `chfn` show them so).
pub fn full_name(s: &str) -> Result<(), String> {
    check_line(s, "a full name", 128, &[])?;
    if let Some(c) = s.chars().find(|c| GECOS_SEPARATORS.contains(c)) {
        return Err(format!(
            "a full name must not contain ',' or ':' (found {c:?}): the passwd comment \
             (GECOS) field splits at ',' and the passwd line at ':'"
        ));
    }
    Ok(())
}

/// What splits the passwd comment field (`,`) and the passwd line (`:`).
const GECOS_SEPARATORS: [char; 2] = [',', ':'];

/// Checks one line of free text: at most `max` characters, no control,
/// bidirectional or invisible characters, none of `forbidden`. The error
/// is for the person who typed it.
pub fn check_line(s: &str, what: &str, max: usize, forbidden: &[char]) -> Result<(), String> {
    if s.chars().count() > max {
        return Err(format!("{what} must be at most {max} characters"));
    }
    if let Some(c) = s.chars().find(|c| is_invisible(*c)) {
        return Err(format!(
            "{what} must not contain control, bidirectional or invisible characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    if let Some(c) = s.chars().find(|c| forbidden.contains(c)) {
        return Err(format!("{what} must not contain {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_hidden_characters_do_not() {
        assert!(check_line("Zoë Ångström-Ōta", "a full name", 128, &[':']).is_ok());
        assert!(check_line("", "a full name", 128, &[':']).is_ok());
        for bad in [
            "evil\u{202E}nimda",
            "a\u{2066}b",
            "zero\u{200B}width",
            "line\u{2028}sep",
            "bom\u{FEFF}",
            "tab\there",
            "nl\n",
            "del\u{7f}",
        ] {
            let e = check_line(bad, "a full name", 128, &[]).unwrap_err();
            assert!(e.contains("U+"), "{bad:?}: {e}");
        }
        assert!(check_line("a:b", "a full name", 128, &[':'])
            .unwrap_err()
            .contains("':'"));
        assert!(check_line(&"x".repeat(129), "a full name", 128, &[]).is_err());
    }

    #[test]
    fn a_full_name_keeps_to_one_gecos_subfield() {
        for good in [
            "Zoë Ångström-Ōta",
            "",
            "J. R. \"Bob\" Dobbs",
            "O'Brien (ops)",
        ] {
            assert_eq!(full_name(good), Ok(()), "{good:?}");
        }
        for bad in ["Doe, Jane", "a,b", ",", "a:b", "Jane,Room 12,555-0100,"] {
            let e = full_name(bad).unwrap_err();
            assert!(
                e.contains("',' or ':'") && e.contains("GECOS"),
                "{bad:?}: {e}"
            );
        }
        // Control characters stay refused, with their own rule.
        assert!(full_name("a\tb").unwrap_err().contains("U+0009"));
        assert!(full_name("a\u{202E}b").unwrap_err().contains("U+202E"));
    }
}
