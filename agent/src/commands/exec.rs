//! The programs commands run: `systemctl`, `journalctl` and the reboot
//! command line, as configured (tests point them at scripts). The argument
//! vectors are built here, pure, so their exact form is unit-tested; unit
//! names reaching them were validated (no leading `-`, no whitespace) and
//! are passed as `--unit=` values or after `--`, never where an option could
//! be read.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

/// `systemctl restart -- UNIT`
pub fn restart_argv(systemctl: &Path, unit: &str) -> Vec<OsString> {
    vec![systemctl.into(), "restart".into(), "--".into(), unit.into()]
}

/// `journalctl --unit=UNIT --lines=N --no-pager --output=short-iso --quiet`
pub fn logs_argv(journalctl: &Path, unit: &str, lines: u32) -> Vec<OsString> {
    vec![
        journalctl.into(),
        format!("--unit={unit}").into(),
        format!("--lines={lines}").into(),
        "--no-pager".into(),
        "--output=short-iso".into(),
        "--quiet".into(),
    ]
}

/// The configured reboot command line as it is.
pub fn reboot_argv(reboot: &[String]) -> Vec<OsString> {
    reboot.iter().map(OsString::from).collect()
}

/// What a program did.
#[derive(Debug)]
pub struct Ran {
    pub success: bool,
    pub status: String,
    /// stdout, then stderr, lossily decoded, at most `max` bytes kept.
    pub output: String,
}

/// Why a program could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("empty command line")]
    Empty,
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        program: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Run `argv` with no stdin, collecting at most `max` bytes of output.
/// The child is killed if this future is dropped (timeout, shutdown).
pub async fn run(argv: &[OsString], max: usize) -> Result<Ran, ExecError> {
    let (program, args) = argv.split_first().ok_or(ExecError::Empty)?;
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| ExecError::Spawn {
            program: program.into(),
            source,
        })?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.stderr.is_empty() {
        output.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    if output.len() > max {
        let mut cut = max;
        while !output.is_char_boundary(cut) {
            cut -= 1;
        }
        output.truncate(cut);
    }
    Ok(Ran {
        success: out.status.success(),
        status: out.status.to_string(),
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn exact_argument_vectors() {
        assert_eq!(
            strs(restart_argv(Path::new("systemctl"), "kiosk.service")),
            ["systemctl", "restart", "--", "kiosk.service"]
        );
        assert_eq!(
            strs(logs_argv(
                Path::new("/usr/bin/journalctl"),
                "kiosk.service",
                50
            )),
            [
                "/usr/bin/journalctl",
                "--unit=kiosk.service",
                "--lines=50",
                "--no-pager",
                "--output=short-iso",
                "--quiet"
            ]
        );
        assert_eq!(
            strs(reboot_argv(&["systemctl".into(), "reboot".into()])),
            ["systemctl", "reboot"]
        );
    }

    #[tokio::test]
    async fn runs_and_reports() {
        let ok = run(
            &["sh".into(), "-c".into(), "echo out; echo err >&2".into()],
            100,
        )
        .await
        .unwrap();
        assert!(ok.success);
        assert_eq!(ok.output, "out\nerr\n");
        let bad = run(&["sh".into(), "-c".into(), "exit 3".into()], 100)
            .await
            .unwrap();
        assert!(!bad.success);
        assert!(bad.status.contains('3'), "{}", bad.status);
        let long = run(&["sh".into(), "-c".into(), "yes | head -c 1000".into()], 10)
            .await
            .unwrap();
        assert_eq!(long.output.len(), 10);
        assert!(run(&["/nonexistent/prog".into()], 10).await.is_err());
    }
}
