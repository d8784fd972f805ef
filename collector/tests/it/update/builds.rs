//! The agent built twice, as versions [`A`] and [`B`], by the test itself:
//! `cargo build -p picket-agent` with `PICKET_AGENT_VERSION` set, into
//! `target/update-test/` (its own target directory, so the workspace's
//! build is not invalidated), without debug information (the binaries are
//! downloaded by the agents: 16 MiB instead of 110). The first build of a
//! checkout compiles the agent's dependencies into that directory (1 min
//! 50 s measured on the 2-core CI machine); after that each version is an
//! incremental rebuild of the agent crate (about 3 s). A third binary,
//! [`Builds::crash`], is a few lines compiled with `rustc`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

pub const A: &str = "1.0.0";
pub const B: &str = "1.1.0";
/// The version [`Builds::crash`] reports.
pub const CRASH: &str = "1.1.1";

pub struct Builds {
    pub a: PathBuf,
    pub b: PathBuf,
    /// An executable for this machine that answers `--version` as a
    /// picket-agent [`CRASH`] does, and exits with status 1 when run: a new
    /// version that passes every check before install and dies at start.
    pub crash: PathBuf,
}

static BUILDS: OnceLock<Builds> = OnceLock::new();

/// Both versions, built once per test process (tests wait for the first
/// one that asked).
pub async fn builds() -> &'static Builds {
    tokio::task::spawn_blocking(|| BUILDS.get_or_init(build_both))
        .await
        .expect("build task")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds the collector")
        .to_path_buf()
}

fn build_both() -> Builds {
    let root = workspace().join("target/update-test");
    let out = root.join("bin");
    std::fs::create_dir_all(&out).expect("create target/update-test/bin");
    // Another test process may build the other version into the same
    // directory between our build and our copy: one at a time.
    let lock = std::fs::File::create(root.join(".lock")).expect("create the build lock");
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; released when it closes.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut paths = Vec::new();
    for version in [A, B] {
        let started = Instant::now();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let result = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "picket-agent",
                "--bin",
                "picket-agent",
            ])
            .arg("--target-dir")
            .arg(&root)
            .env("PICKET_AGENT_VERSION", version)
            .env("CARGO_PROFILE_DEV_DEBUG", "0")
            .env("CARGO_PROFILE_DEV_STRIP", "symbols")
            .current_dir(workspace())
            .output()
            .expect("run cargo");
        assert!(
            result.status.success(),
            "building the agent as {version} failed:\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
        // The next build of the other version overwrites this one.
        let dest = out.join(format!("picket-agent-{version}"));
        let tmp = out.join(format!(".picket-agent-{version}.{}", std::process::id()));
        std::fs::copy(root.join("debug/picket-agent"), &tmp).expect("copy the build");
        std::fs::rename(&tmp, &dest).expect("rename the build");
        eprintln!(
            "built picket-agent {version} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let reported = Command::new(&dest)
            .arg("--version")
            .output()
            .expect("run --version");
        assert_eq!(
            String::from_utf8_lossy(&reported.stdout).trim(),
            format!("picket-agent {version}"),
            "the build reports its version"
        );
        paths.push(dest);
    }
    let b = paths.pop().expect("two builds");
    let a = paths.pop().expect("two builds");
    let crash = build_crash(&out);
    Builds { a, b, crash }
}

/// [`Builds::crash`], compiled with `rustc` from a few lines (a second).
fn build_crash(out: &Path) -> PathBuf {
    let src = out.join("crash.rs");
    std::fs::write(
        &src,
        format!(
            "fn main() {{\n    \
             if std::env::args().nth(1).as_deref() == Some(\"--version\") {{\n        \
             println!(\"picket-agent {CRASH}\");\n    \
             }} else {{\n        std::process::exit(1);\n    }}\n}}\n"
        ),
    )
    .expect("write crash.rs");
    let dest = out.join(format!("crash-{CRASH}"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let result = Command::new(rustc)
        .args(["--edition", "2021", "-o"])
        .arg(&dest)
        .arg(&src)
        .output()
        .expect("run rustc");
    assert!(
        result.status.success(),
        "building the crashing binary failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    dest
}
