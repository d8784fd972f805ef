//! Ask a downloaded binary which version it is, before it is installed.
//!
//! The version an `agent.update` names becomes the file's name, the trial's
//! version and what the collector expects to see online; a binary that
//! reports another one would run on trial under a name it does not answer
//! to. So the artifact is run with `--version` (what every picket-agent
//! answers, older ones included: `picket-agent 1.2.3`, with ` (docker)` on
//! builds with Docker support) and must name the version it was sent as.
//!
//! Running it, rather than looking for a version string in its bytes, also
//! proves that it starts on this device at all: a binary for another
//! architecture, one that needs a dynamic loader or instructions this
//! system lacks, or one that dies at once is refused here with the reason,
//! not found out on trial. It runs with no environment and no stdin, its
//! output bounded and its time limited.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long `--version` may take. An agent answers in milliseconds, even a
/// static one on a Pi Zero: one that does not answer in this time is not a
/// working agent.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of `--version`'s output kept (one line is expected; the rest is
/// read and dropped so that the binary cannot block on a full pipe).
const MAX_OUTPUT: usize = 4096;

/// How much of the output an error quotes.
const QUOTED: usize = 120;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("the artifact cannot be run on this device: {0}")]
    Exec(String),
    #[error("the artifact did not answer --version within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the artifact's --version failed ({status}); it printed {output:?}")]
    Failed { status: String, output: String },
    #[error("the artifact is not a picket-agent: --version printed {0:?}")]
    NotAgent(String),
    #[error("the artifact reports version {reported}, not {label} as the command says")]
    Mismatch { reported: String, label: String },
}

/// Run `binary --version` (at most `limit`) and check that it reports
/// `label`. Blocking.
pub fn check_version(binary: &Path, label: &str, limit: Duration) -> Result<(), ProbeError> {
    let (status, output) = run_version(binary, limit)?;
    judge(status.success(), &status.to_string(), &output, label)
}

/// The verdict on what `--version` did (pure).
pub fn judge(success: bool, status: &str, output: &str, label: &str) -> Result<(), ProbeError> {
    if !success {
        return Err(ProbeError::Failed {
            status: status.to_string(),
            output: quote(output),
        });
    }
    let reported = parse_version(output)?;
    if reported != label {
        return Err(ProbeError::Mismatch {
            reported: reported.to_string(),
            label: label.to_string(),
        });
    }
    Ok(())
}

/// The version in `--version`'s first line: `picket-agent VERSION`, maybe
/// followed by notes such as ` (docker)`.
pub fn parse_version(output: &str) -> Result<&str, ProbeError> {
    let line = output.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("picket-agent"), Some(v)) => Ok(v),
        _ => Err(ProbeError::NotAgent(quote(output))),
    }
}

fn quote(output: &str) -> String {
    let first = output.lines().next().unwrap_or_default().trim();
    let mut cut = first.len().min(QUOTED);
    while !first.is_char_boundary(cut) {
        cut -= 1;
    }
    first[..cut].to_string()
}

fn run_version(binary: &Path, limit: Duration) -> Result<(ExitStatus, String), ProbeError> {
    let mut child = spawn(binary)?;
    let stdout = child.stdout.take();
    let (tx, rx) = mpsc::channel();
    // Read on a thread: a binary that prints nothing and never exits must
    // not hold this one past the limit.
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut out) = stdout {
            let mut buf = [0u8; 1024];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        let _ = tx.send(kept);
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::Timeout(limit));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::Exec(e.to_string()));
            }
        }
    };
    // The pipe ends with the binary, unless a process it started keeps it
    // open: then what it printed is not waited for.
    let output = rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
    Ok((status, String::from_utf8_lossy(&output).into_owned()))
}

fn spawn(binary: &Path) -> Result<Child, ProbeError> {
    let mut attempts = 0;
    loop {
        let r = Command::new(binary)
            .arg("--version")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        match r {
            Ok(child) => return Ok(child),
            // A process another thread forked while the download was still
            // open for writing holds that descriptor until it executes its
            // own program: brief, so try again.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && binary.exists() => {
                return Err(ProbeError::Exec(format!(
                    "{e} (the file is there: the program loader or a library it names is missing)"
                )));
            }
            Err(e) => return Err(ProbeError::Exec(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn versions_in_the_output() {
        let table = [
            ("picket-agent 1.2.3\n", Ok("1.2.3")),
            ("picket-agent 1.2.3 (docker)\n", Ok("1.2.3")),
            ("picket-agent 1.2.3", Ok("1.2.3")),
            ("picket-agent 2.0.0-rc.1\nmore\n", Ok("2.0.0-rc.1")),
            (
                "false (GNU coreutils) 9.1\n",
                Err(ProbeError::NotAgent("false (GNU coreutils) 9.1".into())),
            ),
            (
                "picket-agent\n",
                Err(ProbeError::NotAgent("picket-agent".into())),
            ),
            ("", Err(ProbeError::NotAgent(String::new()))),
            (
                "\npicket-agent 1.0.0\n",
                Err(ProbeError::NotAgent(String::new())),
            ),
        ];
        for (output, want) in table {
            assert_eq!(parse_version(output), want, "{output:?}");
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            judge(true, "exit status: 0", "picket-agent 1.1.0\n", "1.1.0"),
            Ok(())
        );
        assert_eq!(
            judge(
                true,
                "exit status: 0",
                "picket-agent 1.1.0 (docker)\n",
                "1.2.0"
            ),
            Err(ProbeError::Mismatch {
                reported: "1.1.0".into(),
                label: "1.2.0".into()
            })
        );
        let e = judge(false, "exit status: 1", "picket-agent 1.2.0\n", "1.2.0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the artifact's --version failed (exit status: 1); it printed \"picket-agent 1.2.0\""
        );
        let long = "x".repeat(1000);
        match judge(true, "exit status: 0", &long, "1.0.0") {
            Err(ProbeError::NotAgent(q)) => assert_eq!(q.len(), QUOTED),
            other => panic!("{other:?}"),
        }
        let e = ProbeError::Mismatch {
            reported: "1.1.0".into(),
            label: "1.2.0".into(),
        };
        assert_eq!(
            e.to_string(),
            "the artifact reports version 1.1.0, not 1.2.0 as the command says"
        );
    }

    fn script(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn running_binaries() {
        let d = tempfile::tempdir().unwrap();
        let good = script(
            d.path(),
            "good",
            "#!/bin/sh\n[ \"$1\" = --version ] && echo 'picket-agent 1.2.0'\n",
        );
        assert_eq!(check_version(&good, "1.2.0", PROBE_TIMEOUT), Ok(()));
        assert!(matches!(
            check_version(&good, "1.3.0", PROBE_TIMEOUT),
            Err(ProbeError::Mismatch { .. })
        ));
        let failing = script(d.path(), "failing", "#!/bin/sh\necho nope\nexit 3\n");
        let e = check_version(&failing, "1.2.0", PROBE_TIMEOUT).unwrap_err();
        assert!(e.to_string().contains("exit status: 3"), "{e}");

        // Endless output: bounded, and the binary is not blocked by it.
        let chatty = script(d.path(), "chatty", "#!/bin/sh\nyes | head -c 1000000\n");
        let e = check_version(&chatty, "1.2.0", PROBE_TIMEOUT).unwrap_err();
        assert_eq!(e, ProbeError::NotAgent("y".into()));

        let hanging = script(d.path(), "hanging", "#!/bin/sh\nexec sleep 600\n");
        let t = Instant::now();
        let e = check_version(&hanging, "1.2.0", Duration::from_millis(300)).unwrap_err();
        assert_eq!(e, ProbeError::Timeout(Duration::from_millis(300)));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn binaries_that_cannot_run_here() {
        let d = tempfile::tempdir().unwrap();
        // This machine's own header with a machine no kernel runs in it
        // (EM_NONE): refused as an armv7 binary on aarch64 would be. Not
        // the host's other architecture: under user-mode emulation (the
        // aarch64 tests on an x86_64 host) the host would run that one.
        let me = std::env::current_exe().unwrap();
        let mut bytes = std::fs::read(&me).unwrap()[..4096].to_vec();
        bytes[18..20].copy_from_slice(&0u16.to_le_bytes());
        let foreign = d.path().join("foreign");
        std::fs::write(&foreign, &bytes).unwrap();
        std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = check_version(&foreign, "1.2.0", PROBE_TIMEOUT).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the artifact cannot be run on this device: Exec format error"),
            "{e}"
        );
        // A script whose interpreter does not exist.
        let orphan = script(d.path(), "orphan", "#!/nonexistent/sh\n");
        let e = check_version(&orphan, "1.2.0", PROBE_TIMEOUT).unwrap_err();
        assert!(e.to_string().contains("loader or a library"), "{e}");
        let e = check_version(&d.path().join("missing"), "1.2.0", PROBE_TIMEOUT).unwrap_err();
        assert!(matches!(e, ProbeError::Exec(_)), "{e}");
    }
}
