//! What a scrape without a credential is not shown: every family that
//! names a user.

use std::fmt::Write;

use super::family;

/// The family that says whether a scrape has the per-user series.
pub fn per_user_family(out: &mut String, per_user: bool) {
    family(
        out,
        "diycloud_metrics_per_user",
        "gauge",
        "1 when this scrape has the per-user series, 0 when they were withheld (no scrape credential: see [api] metrics_token_file).",
    );
    let _ = writeln!(out, "diycloud_metrics_per_user {}", u8::from(per_user));
}

/// `text` (a scrape as [`render`](super::render) wrote it) without every
/// family that names a user: those called `diycloud_user_*` and any with a
/// `user` label. Decided on the text, so a per-user family added later is
/// withheld too.
pub fn aggregates_only(text: &str) -> String {
    let names_a_user = |line: &str| {
        line.starts_with("diycloud_user_")
            || line.split_once('{').is_some_and(|(_, labels)| {
                labels.starts_with("user=\"") || labels.contains(",user=\"")
            })
    };
    let mut out = String::new();
    let mut block = String::new();
    let mut withheld = false;
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            if !withheld {
                out.push_str(&block);
            }
            block.clear();
            withheld = help.starts_with("diycloud_user_");
        }
        withheld |= !line.starts_with('#') && names_a_user(line);
        block.push_str(line);
        block.push('\n');
    }
    if !withheld {
        out.push_str(&block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_credential_no_family_names_a_user() {
        let text = "# HELP diycloud_users Users.\n# TYPE diycloud_users gauge\n\
                    diycloud_users{state=\"locked\"} 1\n\
                    # HELP diycloud_user_info Info.\n# TYPE diycloud_user_info gauge\n\
                    diycloud_user_info{user=\"boss\",role=\"admin\",state=\"active\"} 1\n\
                    # HELP diycloud_user_oom_kills_total None yet.\n# TYPE diycloud_user_oom_kills_total counter\n\
                    # HELP diycloud_new_thing A later family with a user label.\n# TYPE diycloud_new_thing gauge\n\
                    diycloud_new_thing{gpu=\"0\",user=\"carol\"} 2\n\
                    # HELP diycloud_gpu_unavailable_info Why.\n# TYPE diycloud_gpu_unavailable_info gauge\n\
                    diycloud_gpu_unavailable_info{reason=\"a,user=\\\"x\\\" in a value\"} 1\n\
                    # HELP diycloud_lockouts_total Locks.\n# TYPE diycloud_lockouts_total counter\n\
                    diycloud_lockouts_total 1\n";
        let kept = aggregates_only(text);
        assert_eq!(
            kept,
            "# HELP diycloud_users Users.\n# TYPE diycloud_users gauge\n\
             diycloud_users{state=\"locked\"} 1\n\
             # HELP diycloud_gpu_unavailable_info Why.\n# TYPE diycloud_gpu_unavailable_info gauge\n\
             diycloud_gpu_unavailable_info{reason=\"a,user=\\\"x\\\" in a value\"} 1\n\
             # HELP diycloud_lockouts_total Locks.\n# TYPE diycloud_lockouts_total counter\n\
             diycloud_lockouts_total 1\n"
        );
    }
}
