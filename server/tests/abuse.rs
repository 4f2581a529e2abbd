//! The server under abuse, over real HTTP on loopback: forged
//! X-Forwarded-For, failed and successful logins against the rate limit,
//! slow headers and bodies, more connections than the cap, and a stop
//! during a request. The long-running versions (1,100 slow connections,
//! a 500-login flood, IPv6 rotation inside a /64, SIGTERM to a real
//! `slicectl serve`) are tests/system/api-abuse.sh.
#![deny(unsafe_code)]
// Test code: a panic is how a failed check is reported.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
// What is tested here is time itself: a timeout, a wait in the backlog.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use diycloud_server::{AppState, Listen};
use libdiycloud::config::Config;
use libdiycloud::store::Store;

/// A connection from `source` (a loopback address of the test's choice).
fn connect_from(addr: SocketAddr, source: IpAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// The status of one request sent whole on `stream` (`None`: the server
/// closed the connection without an answer, or none came in 10 s).
fn status_of(mut stream: TcpStream, request: &str) -> Option<u16> {
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.split(' ').nth(1)?.parse().ok()
}

fn login_request(name: &str, password: &str, forwarded: Option<&str>) -> String {
    let body = format!("{{\"username\":\"{name}\",\"password\":\"{password}\"}}");
    let forwarded = forwarded
        .map(|f| format!("X-Forwarded-For: {f}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\n{forwarded}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const HEALTHZ: &str = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

const LOCAL: [u8; 4] = [127, 0, 0, 1];
const OTHER: [u8; 4] = [127, 0, 0, 2];

/// Rotating X-Forwarded-For from `source`: how many of 30 wrong logins got
/// 429.
fn rotating_forged_logins(server: &Server, source: [u8; 4]) -> usize {
    (1..=30)
        .map(|i| {
            let forged = format!("198.51.100.{i}");
            // An unknown name: the account lockout stays out of it.
            let request = login_request("ghost", "wrong", Some(&forged));
            status_of(connect_from(server.addr, source.into()), &request)
        })
        .filter(|status| *status == Some(429))
        .count()
}

#[test]
fn forwarded_for_counts_only_from_a_trusted_proxy_and_none_is_trusted_by_default() {
    // No proxy configured: any local user can reach loopback and write the
    // header, so it is ignored: the 11th attempt on is refused.
    let server = start(10);
    assert_eq!(rotating_forged_logins(&server, LOCAL), 20);
    // The client is the peer, not an address someone else can be framed
    // with: the forged address itself is not limited from elsewhere...
    let elsewhere = login_request("boss", ADMIN_PASSWORD, None);
    assert_eq!(
        status_of(connect_from(server.addr, OTHER.into()), &elsewhere),
        Some(200)
    );
    // ...and the limited peer stays limited whatever it claims.
    let claim = login_request("boss", ADMIN_PASSWORD, Some("203.0.113.50"));
    assert_eq!(
        status_of(connect_from(server.addr, LOCAL.into()), &claim),
        Some(429)
    );

    // nginx on 127.0.0.1, as the shipped site and config say: the address
    // nginx sets names the client (each of these is another client) ...
    let server = start_with(10, "trusted_proxies = [\"127.0.0.1\"]");
    assert_eq!(rotating_forged_logins(&server, LOCAL), 0);
    // ... and from any other peer the header is ignored.
    assert_eq!(rotating_forged_logins(&server, OTHER), 20);
}

#[test]
fn failures_count_and_successes_do_not() {
    let server = start(3);
    // A class behind one address: many logins, all right.
    for _ in 0..12 {
        assert_eq!(server.login("boss", ADMIN_PASSWORD).status, 200);
    }
    for _ in 0..3 {
        assert_eq!(server.login("ghost", "wrong").status, 401);
    }
    let limited = server.login("boss", ADMIN_PASSWORD);
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(
        limited.header("retry-after"),
        Some("20"),
        "a token per 20 s"
    );
}

#[test]
fn a_slow_header_is_cut_off_and_healthz_answers_meanwhile() {
    let server = start_with(10, "header_read_timeout = \"1s\"");
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = connect_from(server.addr, LOCAL.into());
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
                .unwrap();
            stream
        })
        .collect();
    let health = Instant::now();
    assert_eq!(
        status_of(connect_from(server.addr, LOCAL.into()), HEALTHZ),
        Some(200)
    );
    assert!(health.elapsed() < Duration::from_secs(1));
    for stream in &mut slow {
        // Closed by the server (EOF or a reset), not left open: a read
        // that timed out would be an error of kind WouldBlock/TimedOut.
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset,
                "still open after {:?}",
                started.elapsed()
            ),
        }
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[test]
fn a_slow_body_gets_503_after_the_request_timeout() {
    let server = start_with(10, "request_timeout = \"1s\"");
    let mut stream = connect_from(server.addr, LOCAL.into());
    let started = Instant::now();
    stream
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user",
        )
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&took),
        "{took:?}"
    );
}

#[test]
fn past_the_connection_cap_a_client_waits_for_a_slot() {
    let server = start_with(10, "max_connections = 20\nheader_read_timeout = \"2s\"");
    // Twenty connections that send nothing hold every slot...
    let _held: Vec<TcpStream> = (0..20)
        .map(|_| connect_from(server.addr, LOCAL.into()))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // ...so the next waits in the backlog until the header-read timeout
    // frees theirs, then is served.
    let started = Instant::now();
    assert_eq!(
        status_of(connect_from(server.addr, LOCAL.into()), HEALTHZ),
        Some(200)
    );
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(5)).contains(&waited),
        "{waited:?}"
    );
}

#[test]
fn a_stop_waits_for_requests_at_most_the_shutdown_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut config = Config::parse(&format!(
        "db = \"{}\"\n[api]\nshutdown_timeout = \"1s\"\n",
        db.display()
    ))
    .unwrap();
    config.db = db.clone().into();
    drop(Store::init(&db).unwrap());
    let state = Arc::new(AppState::new(config, db));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, addr) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(diycloud_server::run_until(
                state,
                Listen::Tcp(SocketAddr::from((LOCAL, 0))),
                |listen| {
                    if let Listen::Tcp(addr) = listen {
                        bound.send(*addr).unwrap();
                    }
                },
                async {
                    let _ = stopped.await;
                },
            ))
            .unwrap();
        runtime.shutdown_background();
    });
    let addr = addr.recv().unwrap();
    // A request in progress: its body never comes (the request timeout is
    // a minute).
    let mut busy = connect_from(addr, LOCAL.into());
    busy.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    stop.send(()).unwrap();
    server.join().unwrap();
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&took),
        "{took:?}"
    );
    // No new connection is taken once stopped.
    assert!(TcpStream::connect(addr).is_err());
}
