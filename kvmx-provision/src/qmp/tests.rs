//! The client against a fake QMP server on a unix socket: a script of
//! lines to send after each line received.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::thread::JoinHandle;

use super::*;

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}"#;
const OK: &str = r#"{"return": {}}"#;

/// A server that sends the greeting, then answers the n-th line it reads
/// with `replies[n]` (several lines each); it returns what it read.
fn serve(
    replies: Vec<Vec<&'static str>>,
) -> (tempfile::TempDir, Utf8PathBuf, JoinHandle<Vec<String>>) {
    let dir = tempfile::tempdir().unwrap();
    let socket = Utf8PathBuf::from_path_buf(dir.path().join("qmp.sock")).unwrap();
    let listener = UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut writer = stream.try_clone().unwrap();
        writeln!(writer, "{GREETING}").unwrap();
        let mut reader = BufReader::new(stream);
        let mut received = Vec::new();
        for lines in replies {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            received.push(line.trim().to_owned());
            for reply in lines {
                writeln!(writer, "{reply}").unwrap();
            }
        }
        // Hold the connection until the client is done.
        let _ = reader.read_line(&mut String::new());
        received
    });
    (dir, socket, server)
}

fn connect(socket: &Utf8Path) -> Qmp {
    Qmp::connect(socket, Duration::from_secs(2)).unwrap()
}

#[test]
fn negotiates_and_sends_typed_commands() {
    let (_dir, socket, server) = serve(vec![
        vec![OK],
        vec![r#"{"return": {"status": "paused", "running": false, "new-field": 1}}"#],
        vec![OK],
    ]);
    let mut qmp = connect(&socket);
    assert_eq!(qmp.run_state().unwrap(), "paused");
    qmp.execute(&commands::Migrate {
        uri: "exec:cat".into(),
    })
    .unwrap();
    drop(qmp);
    let received = server.join().unwrap();
    assert_eq!(received[0], r#"{"execute":"qmp_capabilities"}"#);
    assert_eq!(received[1], r#"{"execute":"query-status"}"#);
    assert_eq!(
        received[2],
        r#"{"arguments":{"uri":"exec:cat"},"execute":"migrate"}"#
    );
}

#[test]
fn events_between_replies_are_kept_for_a_wait() {
    let (_dir, socket, _server) = serve(vec![
        vec![OK],
        vec![
            r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}}"#,
            r#"{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#,
            OK,
        ],
    ]);
    let mut qmp = connect(&socket);
    qmp.execute(&commands::SystemPowerdown).unwrap();
    let event = qmp
        .wait_event("SHUTDOWN", Duration::from_secs(1), |_| true)
        .unwrap();
    assert_eq!(event.data["reason"], "guest-shutdown");
}

#[test]
fn an_event_that_comes_later_ends_the_wait() {
    let (_dir, socket, _server) = serve(vec![
        vec![OK],
        vec![
            OK,
            r#"{"event": "MIGRATION", "data": {"status": "active"}}"#,
            r#"{"event": "MIGRATION", "data": {"status": "completed"}}"#,
        ],
    ]);
    let mut qmp = connect(&socket);
    qmp.execute(&commands::Cont).unwrap();
    let event = qmp
        .wait_event("MIGRATION", Duration::from_secs(1), |e| {
            e.data["status"] == "completed"
        })
        .unwrap();
    assert_eq!(event.name, "MIGRATION");
}

#[test]
fn a_wait_gives_up_at_its_timeout() {
    let (_dir, socket, _server) = serve(vec![vec![OK], vec![OK]]);
    let mut qmp = connect(&socket);
    let error = qmp
        .wait_event("SHUTDOWN", Duration::from_millis(100), |_| true)
        .unwrap_err();
    assert!(matches!(error, QmpError::NoEvent { .. }), "{error:?}");
    // The connection still serves commands after the wait.
    qmp.execute(&commands::Stop).unwrap();
}

#[test]
fn an_error_reply_names_the_command_and_the_reason() {
    let (_dir, socket, _server) = serve(vec![
        vec![OK],
        vec![r#"{"error": {"class": "DeviceNotFound", "desc": "Device 'x' not found"}}"#],
    ]);
    let mut qmp = connect(&socket);
    let error = qmp
        .execute(&commands::DeviceDel { id: "x".into() })
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "QEMU refused `device_del`: Device 'x' not found"
    );
}

#[test]
fn a_silent_server_times_out() {
    let (_dir, socket, _server) = serve(vec![vec![OK], vec![]]);
    let mut qmp = Qmp::connect(&socket, Duration::from_millis(200)).unwrap();
    let error = qmp.execute(&commands::QueryStatus).unwrap_err();
    assert!(matches!(error, QmpError::Io(_)), "{error:?}");
}

#[test]
fn a_socket_that_is_not_qmp_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = Utf8PathBuf::from_path_buf(dir.path().join("qmp.sock")).unwrap();
    let listener = UnixListener::bind(&socket).unwrap();
    let _server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        writeln!(stream, r#"{{"hello": 1}}"#).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    });
    let error = Qmp::connect(&socket, Duration::from_secs(1))
        .err()
        .expect("refused");
    assert!(matches!(error, QmpError::Protocol(_)), "{error:?}");
}
