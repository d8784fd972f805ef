//! A small stand-in for systemd running the agent's unit: `ExecStart=` the
//! entry binary, `Restart=always` with `RestartSec=200ms`, and after every
//! exit `ExecStopPost=<entry> post-stop` with the environment systemd gives
//! it (`SERVICE_RESULT`, `EXIT_CODE`, `EXIT_STATUS`). The watchdog is not
//! simulated: these tests do not hang an agent.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
struct Seen {
    pid: Option<u32>,
    starts: u32,
    /// How each run ended, as systemd's `$EXIT_CODE`/`$EXIT_STATUS`.
    exits: Vec<String>,
}

pub struct Supervisor {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What systemd passes to `ExecStopPost=` for a main process that ended
/// with `status`.
fn systemd_env(status: &ExitStatus) -> [(&'static str, String); 3] {
    match (status.code(), status.signal()) {
        (Some(code), _) => [
            (
                "SERVICE_RESULT",
                if code == 0 { "success" } else { "exit-code" }.into(),
            ),
            ("EXIT_CODE", "exited".into()),
            ("EXIT_STATUS", code.to_string()),
        ],
        (None, sig) => {
            let name = match sig.unwrap_or(0) {
                libc::SIGKILL => "KILL".to_string(),
                libc::SIGTERM => "TERM".to_string(),
                libc::SIGSEGV => "SEGV".to_string(),
                libc::SIGABRT => "ABRT".to_string(),
                n => n.to_string(),
            };
            let dumped = status.core_dumped();
            [
                (
                    "SERVICE_RESULT",
                    if dumped { "core-dump" } else { "signal" }.into(),
                ),
                ("EXIT_CODE", if dumped { "dumped" } else { "killed" }.into()),
                ("EXIT_STATUS", name),
            ]
        }
    }
}

impl Supervisor {
    /// Run `entry run` with `env` (nothing inherited but `PATH`), logging
    /// stderr to `log`.
    pub fn start(entry: &Path, env: Vec<(String, String)>, log: PathBuf) -> Supervisor {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2, entry) = (Arc::clone(&seen), Arc::clone(&stop), entry.to_path_buf());
        let command = move |args: &[&str]| {
            let mut c = Command::new(&entry);
            c.args(args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("open the agent log");
            c.stderr(file);
            c
        };
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let mut child = command(&["run"]).spawn().expect("start the agent");
                {
                    let mut s = seen2.lock().expect("lock");
                    s.pid = Some(child.id());
                    s.starts += 1;
                }
                let status = loop {
                    if let Ok(Some(st)) = child.try_wait() {
                        break st;
                    }
                    if stop2.load(Ordering::SeqCst) {
                        // systemctl stop: SIGTERM, then SIGKILL after 20 s.
                        // SAFETY: signalling our own child.
                        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                        let mut waited = 0;
                        let st = loop {
                            if let Ok(Some(st)) = child.try_wait() {
                                break st;
                            }
                            if waited > 1000 {
                                let _ = child.kill();
                                break child.wait().expect("wait");
                            }
                            waited += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        };
                        break st;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                let env = systemd_env(&status);
                seen2
                    .lock()
                    .expect("lock")
                    .exits
                    .push(format!("{} {}", env[1].1, env[2].1));
                let _ = command(&["post-stop"])
                    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                    .status();
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Supervisor {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.seen.lock().expect("lock").pid
    }

    pub fn starts(&self) -> u32 {
        self.seen.lock().expect("lock").starts
    }

    pub fn exits(&self) -> Vec<String> {
        self.seen.lock().expect("lock").exits.clone()
    }

    /// The binary the agent process runs now (it changes on exec).
    pub fn exe(&self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/exe", self.pid()?)).ok()
    }

    /// SIGKILL the agent process (a crash); the supervisor restarts it.
    pub fn kill(&self) {
        if let Some(pid) = self.pid() {
            // SAFETY: signalling the child this supervisor started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }

    /// `systemctl stop`: SIGTERM and no restart.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.halt();
    }
}

/// systemd's notification socket (`NOTIFY_SOCKET`): every line the agent
/// sends, in order.
pub struct Notifications {
    pub path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Notifications {
    pub fn bind(path: PathBuf) -> Notifications {
        let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (Arc::clone(&lines), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    l.lock()
                        .expect("lock")
                        .extend(text.lines().map(str::to_string));
                }
            }
        });
        Notifications {
            path,
            lines,
            stop,
            thread: Some(thread),
        }
    }

    /// The lines so far, watchdog pings left out.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| *l != "WATCHDOG=1")
            .cloned()
            .collect()
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
