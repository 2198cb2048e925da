//! Slow and greedy clients against the real binary, over raw sockets: the
//! transport flags reach both faces.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{temp_dir, Server};

/// Reads until the server closes or `within` passes; returns what came and
/// whether the server closed.
fn read_all(s: &mut TcpStream, within: Duration) -> (String, bool) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn status_of(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn quick_server() -> Server {
    Server::start(
        &temp_dir("transport-models"),
        &[
            "--header-read-timeout-ms",
            "300",
            "--body-read-timeout-ms",
            "300",
            "--max-connections",
            "4",
        ],
    )
}

#[test]
fn stalled_heads_and_bodies_are_cut_off_and_lying_lengths_refused_at_once() {
    let server = quick_server();
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let started = Instant::now();
    s.write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .unwrap();
    let (_, closed) = read_all(&mut s, Duration::from_secs(5));
    let took = started.elapsed();
    assert!(closed, "a stalled head keeps its connection");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );

    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 50\r\n\r\n{\"in")
        .unwrap();
    let (answer, closed) = read_all(&mut s, Duration::from_secs(5));
    assert!(closed);
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(answer.contains("body read timeout"), "{answer}");

    let mut s = TcpStream::connect(&server.addr).unwrap();
    let started = Instant::now();
    s.write_all(
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 83886080\r\n\r\n{",
    )
    .unwrap();
    let (answer, _) = read_all(&mut s, Duration::from_secs(5));
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.contains("limit of 67108864 bytes"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the 413 waited for the body"
    );
}

#[test]
fn connections_past_the_cap_are_refused_on_both_ports() {
    let server = quick_server();
    // Requests in progress hold their connections (the body is never finished,
    // but 300 ms is long enough to open the fifth).
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(&server.addr).unwrap();
            s.write_all(
                b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n",
            )
            .unwrap();
            s
        })
        .collect();
    let mut fifth = TcpStream::connect(&server.addr).unwrap();
    let (answer, closed) = read_all(&mut fifth, Duration::from_secs(5));
    assert!(closed);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{answer}"
    );
    assert!(answer.ends_with("too many connections"), "{answer}");
    drop(held);

    // gRPC: a connection that says nothing is closed after the header timeout.
    let mut silent = TcpStream::connect(&server.grpc_addr).unwrap();
    let started = Instant::now();
    assert!(read_all(&mut silent, Duration::from_secs(5)).1);
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Four that speak HTTP/2 stay; the fifth is closed at once.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    let mut speaking: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(&server.grpc_addr).unwrap();
            s.write_all(preface).unwrap();
            s
        })
        .collect();
    let mut fifth = TcpStream::connect(&server.grpc_addr).unwrap();
    let _ = fifth.write_all(preface);
    let started = Instant::now();
    let (_, closed) = read_all(&mut fifth, Duration::from_secs(5));
    assert!(closed && started.elapsed() < Duration::from_secs(1));
    for s in &mut speaking {
        let (_, closed) = read_all(s, Duration::from_millis(200));
        assert!(!closed, "an admitted gRPC connection was closed");
    }
}
