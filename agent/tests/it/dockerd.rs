//! A real Docker engine for the Docker tests.
//!
//! [`Engine::shared`] is the engine CI starts (`.ci/run`: `dockerd
//! --bridge=none --iptables=false` on its own socket, data and exec roots)
//! and names in `PICKET_TEST_DOCKER_SOCKET`, with the test image (busybox in
//! a `FROM scratch` image, `PICKET_TEST_DOCKER_IMAGE`, default
//! `picket-test-busybox`) already built. [`Engine::own`] starts a daemon of
//! the test's own, which the test may stop and start again; it needs root,
//! `dockerd` (or `PICKET_TEST_DOCKERD`) and a static busybox
//! (`PICKET_TEST_BUSYBOX`, default `/bin/busybox`) to build the image.
//!
//! Containers always run with `--network none`; nothing is ever pulled.
//! Both the agent's and the collector's suites use this file.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub const NEEDS_ENGINE: &str = "needs a Docker engine; set PICKET_TEST_DOCKER_SOCKET";

pub struct Engine {
    pub socket: PathBuf,
    pub image: String,
    own: Option<Own>,
    /// Containers this test created: removed when the engine is dropped,
    /// also when the test fails half-way.
    created: std::sync::Mutex<Vec<String>>,
}

/// A dockerd this test started, and the directories it owns.
struct Own {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn image_name() -> String {
    std::env::var("PICKET_TEST_DOCKER_IMAGE").unwrap_or_else(|_| "picket-test-busybox".into())
}

fn docker_cli() -> String {
    std::env::var("PICKET_TEST_DOCKER_CLI").unwrap_or_else(|_| "docker".into())
}

impl Engine {
    /// The engine CI started. Panics, saying what to set, when there is
    /// none: these tests run only with `--ignored` and must not pass
    /// without an engine.
    pub fn shared() -> Engine {
        let socket = std::env::var("PICKET_TEST_DOCKER_SOCKET")
            .unwrap_or_else(|_| panic!("{NEEDS_ENGINE} (see .ci/run)"));
        let socket = PathBuf::from(socket.trim_start_matches("unix://"));
        assert!(
            socket.exists(),
            "PICKET_TEST_DOCKER_SOCKET={} does not exist",
            socket.display()
        );
        Engine {
            socket,
            image: image_name(),
            own: None,
            created: Default::default(),
        }
    }

    /// A dockerd of this test's own, on sockets and directories of its
    /// own, with the test image built into it.
    pub async fn own() -> Engine {
        // The shared engine's presence says this machine runs Docker tests.
        Engine::shared();
        let dir = tempfile::Builder::new()
            .prefix("pkd")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let mut engine = Engine {
            socket: dir.path().join("docker.sock"),
            image: image_name(),
            own: Some(Own { child: None, dir }),
            created: Default::default(),
        };
        engine.start().await;
        engine.build_image().await;
        engine
    }

    /// Start (again) the test's own dockerd and wait until it answers.
    pub async fn start(&mut self) {
        let own = self
            .own
            .as_mut()
            .expect("only a test's own engine is started");
        assert!(own.child.is_none(), "already running");
        let d = own.dir.path();
        let dockerd = std::env::var("PICKET_TEST_DOCKERD").unwrap_or_else(|_| "dockerd".into());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .expect("dockerd log");
        let child = Command::new(&dockerd)
            .args(["--bridge=none", "--iptables=false", "--shutdown-timeout=2"])
            .arg(format!("--data-root={}", d.join("data").display()))
            .arg(format!("--exec-root={}", d.join("exec").display()))
            .arg(format!("--pidfile={}", d.join("docker.pid").display()))
            .arg(format!("--host=unix://{}", self.socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {dockerd}: {e}"));
        own.child = Some(child);
        let log_path = d.join("dockerd.log");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let up = self
                .cli_output(&["version", "--format", "{{.Server.Version}}"])
                .await
                .status
                .success();
            if up {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("dockerd did not answer within 90 s:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stop the test's own dockerd (SIGTERM to the process it started,
    /// then SIGKILL if it lingers) and wait until it is gone.
    pub async fn stop(&mut self) {
        let own = self
            .own
            .as_mut()
            .expect("only a test's own engine is stopped");
        let Some(mut child) = own.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not
            // reaped yet; no memory is involved.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// `FROM scratch` with a static busybox: no registry, no pull.
    async fn build_image(&self) {
        let busybox =
            std::env::var("PICKET_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".into());
        let ctx = tempfile::tempdir().expect("tempdir");
        std::fs::copy(&busybox, ctx.path().join("busybox"))
            .unwrap_or_else(|e| panic!("cannot copy {busybox}: {e}"));
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nENV PATH=/bin\n",
        )
        .expect("Dockerfile");
        let dir = ctx.path().display().to_string();
        self.cli(&["build", "-q", "--network", "none", "-t", &self.image, &dir])
            .await;
    }

    async fn cli_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(docker_cli())
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_CONTEXT")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", docker_cli()))
    }

    /// Run the docker CLI against this engine; its trimmed stdout.
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args).await;
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `docker run -d --network none` of the test image running `script`
    /// under `sh`, with `labels` (`key=value`); its id.
    pub async fn run(&self, name: &str, labels: &[&str], script: &str) -> String {
        self.run_with(name, labels, &[], script).await
    }

    pub async fn run_with(
        &self,
        name: &str,
        labels: &[&str],
        extra: &[&str],
        script: &str,
    ) -> String {
        let mut args: Vec<&str> = vec!["run", "-d", "--network", "none", "--name", name];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.extend(extra);
        args.extend([self.image.as_str(), "sh", "-c", script]);
        if let Ok(mut c) = self.created.lock() {
            c.push(name.to_string());
        }
        self.cli(&args).await
    }

    pub async fn inspect(&self, name: &str, format: &str) -> String {
        self.cli(&["inspect", "--format", format, name]).await
    }

    /// Kill the container's main process from outside the engine, as the
    /// kernel's OOM killer or a crash would end it: no stop request.
    pub async fn kill_process(&self, name: &str) {
        let pid: i32 = self
            .inspect(name, "{{.State.Pid}}")
            .await
            .parse()
            .expect("a pid");
        assert!(pid > 0, "{name} is not running");
        // SAFETY: kill(2) with a pid the engine reported; no memory is
        // involved. Tests run as root, like the engine.
        let r = unsafe { libc::kill(pid, libc::SIGKILL) };
        assert_eq!(r, 0, "kill {pid}: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let created = self
            .created
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        if !created.is_empty() {
            let _ = std::process::Command::new(docker_cli())
                .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
                .args(["rm", "-f"])
                .args(&created)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let Some(own) = &mut self.own else { return };
        let Some(child) = &mut own.child else { return };
        if let Some(pid) = child.id() {
            // SAFETY: as in `stop`. A clean stop unmounts the containers'
            // file systems, so the TempDir can then be removed.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}
