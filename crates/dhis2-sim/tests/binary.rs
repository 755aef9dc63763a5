//! Runs the real `dhis2-sim` binary: `--port 0`, the listening line, one raw HTTP/1.1 GET,
//! and a clean exit on SIGTERM.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

#[test]
fn binary_listens_answers_ping_and_stops() {
    let data = tempfile::tempdir().expect("tempdir");
    let (mut child, line) = common::spawn_binary(data.path(), &[]);
    let prefix = "dhis2-sim listening on http://127.0.0.1:";
    assert!(line.starts_with(prefix), "{line:?}");
    let port: u16 = line.trim()[prefix.len()..].parse().expect("port");
    assert_ne!(port, 0);

    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(b"GET /api/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("pong"), "{response}");
    assert!(data.path().join("dhis2-sim.sqlite").exists());

    // SIGTERM → graceful exit with status 0.
    #[cfg(unix)]
    {
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "{status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("dhis2-sim did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    #[cfg(not(unix))]
    {
        let _ = child.kill();
        let _ = child.wait();
    }
}
