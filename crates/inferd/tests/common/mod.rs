//! What the end-to-end tests share: the real binary on a real socket (port 0)
//! and a plain HTTP/1.1 client, so a test sees exactly the bytes a user would.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[path = "../../../../tests/prerequisite.rs"]
pub mod prerequisite;

/// A fresh folder under the temp dir, unique to this test process and tag.
pub fn temp_dir(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("inferd-e2e-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `inferd serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The gRPC face's `host:port`.
    pub grpc_addr: String,
}

impl Server {
    pub fn start(models: &Path, extra: &[&str]) -> Server {
        let data = temp_dir("data");
        Server::start_with_data(models, &data, extra)
    }

    pub fn start_with_data(models: &Path, data: &Path, extra: &[&str]) -> Server {
        let mut args: Vec<String> = ["--port", "0", "--grpc-port", "0", "--models"]
            .map(String::from)
            .into();
        args.push(models.display().to_string());
        args.push("--data-dir".into());
        args.push(data.display().to_string());
        args.extend(extra.iter().map(|a| a.to_string()));
        Server::serve(&args)
    }

    /// `inferd serve ARGS`, once it says where it listens.
    pub fn serve(args: &[String]) -> Server {
        // From the workspace root, so the default catalog file is found.
        let mut child = Command::new(env!("CARGO_BIN_EXE_inferd"))
            .current_dir(workspace())
            .arg("serve")
            .args(args)
            .env("INFERD_LOG", "info")
            .env_remove("PORT")
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting inferd");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[inferd] {line}");
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send((false, addr.trim().to_string()));
                } else if let Some(addr) = line.split("gRPC (KServe V2) listening on ").nth(1) {
                    let _ = tx.send((true, addr.trim().to_string()));
                }
            }
        });
        let (mut addr, mut grpc_addr) = (String::new(), String::new());
        while addr.is_empty() || grpc_addr.is_empty() {
            let (grpc, a) = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("inferd did not report its addresses");
            *(if grpc { &mut grpc_addr } else { &mut addr }) = a;
        }
        Server {
            child,
            addr,
            grpc_addr,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection; returns status and body.
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    request(addr, method, path, &[], body)
}

/// `http` with extra headers (credentials, say).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Runs `inferd <args>` to completion; returns exit success, stdout, stderr.
/// A command that should exit but keeps running (a server that should have
/// refused to start, say) fails the test after a minute instead of hanging it.
pub fn inferd(args: &[&str]) -> (bool, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_inferd"))
        .args(args)
        .env_remove("INFERD_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running inferd");
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = Command::new("kill").args(["-9", &pid]).status();
        panic!("`inferd {}` did not exit within a minute", args.join(" "));
    };
    let out = out.expect("waiting for inferd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
