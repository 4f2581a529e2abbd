//! Section 4: an OOM kill in a real session, as a limit event: with
//! `slicectl serve` watching (every second), the kill reaches
//! `slicectl usage`, alice's next login (once) and `/metrics`.

use std::io::{Read, Write};
use std::time::Duration;

use super::login::ALICE_PW;
use super::{oneline, wait_for, write, Cmd, Guest, SSH_OPTIONS};

/// The config of the watching server: events every second, and /metrics'
/// per-user series for a scraper with the token of /root/metrics-token.
pub const EVENTS_CONFIG: &str = "/root/events.toml";
const TOKEN: &str = "vm-scrape-token-1234567890";

/// Starts the watching server as systemd unit `unit` on 127.0.0.1:8479 and
/// waits until it answers.
pub fn start_watcher(g: &Guest, unit: &str) {
    write("/root/metrics-token", &format!("{TOKEN}\n"));
    let _ = std::fs::set_permissions(
        "/root/metrics-token",
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    );
    write(
        EVENTS_CONFIG,
        "[events]\ninterval = \"1s\"\n[api]\nmetrics_token_file = \"/root/metrics-token\"\n",
    );
    if !g.serve(unit, EVENTS_CONFIG, "127.0.0.1:8479") {
        g.info(&format!(
            "{unit}: not answering on 127.0.0.1:8479 after 60 s"
        ));
    }
    // Its first round runs as it starts listening: the counters as they
    // stand then are the starting point. A second more for that round.
    std::thread::sleep(Duration::from_secs(1));
}

/// The first of `user`'s limit events of `kind`, waiting up to 60 s for the
/// watcher to record it.
pub fn usage_event(g: &Guest, user: &str, kind: &str) -> Option<serde_json::Value> {
    let mut found = None;
    wait_for(Duration::from_secs(60), Duration::from_secs(1), || {
        found = first_event(&g.slicectl_json(&["--json", "usage", user]), kind);
        found.is_some()
    });
    found
}

/// The first object in `value` whose "kind" is `kind`.
fn first_event(value: &serde_json::Value, kind: &str) -> Option<serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("kind").and_then(|k| k.as_str()) == Some(kind) {
                return Some(value.clone());
            }
            map.values().find_map(|v| first_event(v, kind))
        }
        serde_json::Value::Array(items) => items.iter().find_map(|v| first_event(v, kind)),
        _ => None,
    }
}

/// A plain HTTP/1.0 GET of `path` on the watcher, with a bearer `token`.
fn get(path: &str, token: Option<&str>) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect("127.0.0.1:8479") else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let _ = write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n"
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.replace('\r', "")
}

/// An interactive login (sshd prints PAM's notices only where a terminal is
/// asked for and no command given): what it printed.
fn login_text() -> String {
    Cmd::new(&["sshpass", "-p", ALICE_PW, "ssh", "-tt"])
        .args(SSH_OPTIONS)
        .arg("alice@127.0.0.1")
        .input("exit\n")
        .timeout(180)
        .run()
        .stdout
        .replace('\r', "")
}

pub fn run(g: &Guest) {
    start_watcher(g, "diycloud-events");
    let oom = g.ssh(
        "alice",
        ALICE_PW,
        "perl -e \"\\$x = q(a) x (400 * 1024 * 1024); print qq(allocated\\n)\"; echo rc=$?",
    );
    let rc = oom
        .stdout
        .lines()
        .filter_map(|l| l.find("rc=").map(|at| &l[at..]))
        .next_back()
        .unwrap_or("")
        .to_string();
    g.check(
        "allocating 400M under MemoryMax=256M is OOM-killed",
        "rc=137",
        &rc,
    );

    let event = usage_event(g, "alice", "oom_kill").unwrap_or_default();
    g.info(&format!("limit event: {event}"));
    let processes = event["processes"]
        .as_array()
        .and_then(|p| p.first())
        .and_then(|p| p.as_str())
        .unwrap_or("");
    let seen = match (event["count"].as_u64(), event["limit"].as_str()) {
        (Some(count), Some(limit)) => format!("count={count} limit={limit} processes={processes}"),
        _ => String::new(),
    };
    g.check(
        "usage --json reports one OOM kill, of perl, over 256M",
        "count=1 limit=256M processes=perl",
        &seen,
    );
    let at = event["at"].as_str().unwrap_or("");
    let dated = at.len() == 20
        && at.starts_with("20")
        && at.as_bytes().get(10) == Some(&b'T')
        && at.ends_with('Z');
    if dated {
        g.pass("the OOM kill has its time");
    } else {
        g.fail(
            "the OOM kill's time",
            "\"at\":\"YYYY-MM-DDTHH:MM:SSZ\"",
            &event.to_string(),
        );
    }

    // The notice once, not at the login after.
    let notice = "1 process was stopped for using more than 256M of memory (perl).";
    let first = login_text();
    if first.contains(notice) {
        g.pass("alice's next login tells her of the kill");
    } else {
        let head: Vec<&str> = first.lines().take(5).collect();
        g.fail(
            "the notice at the next login",
            notice,
            &oneline(&head.join("\n")),
        );
    }
    let second = login_text();
    if second.contains("was stopped") {
        let head: Vec<&str> = second.lines().take(5).collect();
        g.fail(
            "the notice is shown once",
            "no notice at the login after",
            &oneline(&head.join("\n")),
        );
    } else {
        g.pass("the login after does not tell it again");
    }

    let metrics = get("/metrics", Some(TOKEN));
    let kills = metrics
        .lines()
        .find_map(|l| l.strip_prefix("diycloud_user_oom_kills_total{user=\"alice\"} "))
        .unwrap_or("")
        .trim()
        .to_string();
    g.check(
        "/metrics counts the OOM kill (with the scrape token)",
        "1",
        &kills,
    );
    let metrics = get("/metrics", None);
    g.check(
        "/metrics without the token names no user",
        "0",
        &metrics
            .lines()
            .filter(|l| l.contains("user=\""))
            .count()
            .to_string(),
    );
    let journal = Cmd::new(&["journalctl", "-q", "--no-pager", "-u", "diycloud-events"])
        .run()
        .stdout;
    let lines: Vec<&str> = journal
        .lines()
        .filter(|l| l.to_lowercase().contains("limit event"))
        .collect();
    for line in &lines[lines.len().saturating_sub(3)..] {
        g.info(&format!("events server: {line}"));
    }
    Cmd::new(&["systemctl", "stop", "diycloud-events"]).run();
}
