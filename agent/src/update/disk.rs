//! The update directory on disk: `state.json` replaced atomically, the
//! binaries in `bin/`, and the check that a downloaded file is an
//! executable for this machine.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::state::{Installed, State};
use crate::config::UpdateConfig;
use crate::durable::{DurableError, sync_dir, write_atomic};

const STATE_FILE: &str = "state.json";
const BIN_DIR: &str = "bin";

/// Why the update directory could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("update state lock poisoned")]
    Poisoned,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot set {} aside: {source}", path.display())]
    SetAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Durable(#[from] DurableError),
    #[error("{} has no directory", path.display())]
    NoDirectory { path: PathBuf },
    #[error("cannot copy {} to {}: {source}", src.display(), dest.display())]
    Copy {
        src: PathBuf,
        dest: PathBuf,
        source: std::io::Error,
    },
}

/// The update directory of one agent process. Every change of the state is
/// a read-modify-write under one lock: the command that installs and the
/// task that commits and reports run side by side.
#[derive(Debug)]
pub struct Updates {
    cfg: UpdateConfig,
    lock: Mutex<()>,
}

impl Updates {
    pub fn new(cfg: UpdateConfig) -> Updates {
        Updates {
            cfg,
            lock: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &UpdateConfig {
        &self.cfg
    }

    pub fn state_file(&self) -> PathBuf {
        state_file(&self.cfg.dir)
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.cfg.dir.join(BIN_DIR)
    }

    pub fn path_of(&self, i: &Installed) -> PathBuf {
        self.bin_dir().join(&i.file)
    }

    /// The state; a missing file is the empty state. Blocking.
    pub fn load(&self) -> Result<State, DiskError> {
        let _g = self.lock()?;
        Ok(read_state(&self.state_file())?.unwrap_or_default())
    }

    /// [`Updates::load`], but a damaged file is set aside (and the error
    /// returned with the empty state) instead of refusing: a state nobody
    /// can read would refuse every update until someone logs in to the
    /// box. Blocking.
    pub fn load_or_set_aside(&self) -> Result<(State, Option<StateError>), DiskError> {
        let _g = self.lock()?;
        let path = self.state_file();
        match read_state(&path) {
            Ok(s) => Ok((s.unwrap_or_default(), None)),
            Err(e @ StateError::Damaged { .. }) => {
                set_aside(&path).map_err(|source| DiskError::SetAside { path, source })?;
                Ok((State::default(), Some(e)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Change the state and write it if `f` changed it. Blocking.
    pub fn modify<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R, DiskError> {
        let _g = self.lock()?;
        let path = self.state_file();
        let before = read_state(&path)?.unwrap_or_default();
        let mut state = before.clone();
        let r = f(&mut state);
        if state != before {
            write_state(&path, &state)?;
        }
        Ok(r)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ()>, DiskError> {
        self.lock.lock().map_err(|_| DiskError::Poisoned)
    }
}

pub fn state_file(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not JSON, or not a state this version understands.
    #[error("{} is damaged: {source}", path.display())]
    Damaged {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// `None` when there is no state file.
pub fn read_state(path: &Path) -> Result<Option<State>, StateError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Damaged {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Move a state file nobody can read out of the way, kept beside it for
/// inspection (`state.json.damaged`).
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let aside = path.with_extension("json.damaged");
    fs::rename(path, &aside)?;
    Ok(aside)
}

/// Whether this process runs from `file` (the same inode: a path can be
/// replaced while the process runs). False when either cannot be looked at.
pub fn runs_from(file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // Opened, not stat'ed: the open reaches the running binary on any
    // kernel, and also under user-mode emulation (qemu-user, where the
    // agent's aarch64 tests run), which answers a stat of /proc/self/exe
    // with the emulator's own file.
    let me = fs::File::open("/proc/self/exe").and_then(|f| f.metadata());
    match (me, fs::metadata(file)) {
        (Ok(me), Ok(f)) => me.dev() == f.dev() && me.ino() == f.ino(),
        _ => false,
    }
}

/// Temp file, fsync, rename, fsync the directory: after a power cut the
/// state is the old one or the new one.
pub fn write_state(path: &Path, state: &State) -> Result<(), DiskError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|source| DiskError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let json = serde_json::to_vec_pretty(state)?;
    Ok(write_atomic(path, &json)?)
}

/// Copy `src` to `dest` as an executable (0755), durably: a temporary file
/// beside `dest`, fsync, rename, fsync the directory. Blocking.
pub fn copy_executable(src: &Path, dest: &Path) -> Result<u64, DiskError> {
    let dir = dest.parent().ok_or_else(|| DiskError::NoDirectory {
        path: dest.to_path_buf(),
    })?;
    let tmp = dir.join(format!(
        ".{}.part",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = (|| -> std::io::Result<u64> {
        let mut from = File::open(src)?;
        let mut to = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o755)
            .open(&tmp)?;
        let n = std::io::copy(&mut from, &mut to)?;
        to.flush()?;
        to.sync_all()?;
        fs::rename(&tmp, dest)?;
        Ok(n)
    })();
    match result {
        Ok(n) => {
            sync_dir(dir)?;
            Ok(n)
        }
        Err(source) => {
            let _ = fs::remove_file(&tmp);
            Err(DiskError::Copy {
                src: src.to_path_buf(),
                dest: dest.to_path_buf(),
                source,
            })
        }
    }
}

/// Why a header is not that of an executable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF executable")]
    NotElf,
    #[error("an ELF file of unknown byte order")]
    UnknownByteOrder,
    #[error("an ELF file that is not an executable (type {0})")]
    NotExecutable(u16),
}

/// Why a downloaded file will not run on this machine.
#[derive(Debug, thiserror::Error)]
pub enum ExecutableError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the running binary is {0}: cannot compare")]
    Reference(ElfError),
    #[error("the artifact is {0}")]
    Artifact(ElfError),
    #[error("the artifact is built for {got}, this device runs {want}")]
    Foreign { got: ElfId, want: ElfId },
}

/// The parts of an ELF header that say which machines run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfId {
    /// 1: 32-bit, 2: 64-bit.
    pub class: u8,
    /// 1: little-endian, 2: big-endian.
    pub data: u8,
    pub machine: u16,
}

impl ElfId {
    pub fn parse(header: &[u8]) -> Result<ElfId, ElfError> {
        if header.len() < 20 || &header[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        let (class, data) = (header[4], header[5]);
        let m = [header[18], header[19]];
        let machine = match data {
            1 => u16::from_le_bytes(m),
            2 => u16::from_be_bytes(m),
            _ => return Err(ElfError::UnknownByteOrder),
        };
        let kind = match data {
            1 => u16::from_le_bytes([header[16], header[17]]),
            _ => u16::from_be_bytes([header[16], header[17]]),
        };
        // ET_EXEC, or ET_DYN (position-independent executables).
        if !matches!(kind, 2 | 3) {
            return Err(ElfError::NotExecutable(kind));
        }
        Ok(ElfId {
            class,
            data,
            machine,
        })
    }
}

impl fmt::Display for ElfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arch = match self.machine {
            3 => "x86".to_string(),
            40 => "arm".to_string(),
            62 => "x86_64".to_string(),
            183 => "aarch64".to_string(),
            243 => "riscv".to_string(),
            m => format!("machine {m}"),
        };
        let bits = if self.class == 2 { 64 } else { 32 };
        write!(f, "{arch}, {bits}-bit")
    }
}

/// Whether `candidate` runs where `reference` (the running binary) runs:
/// the same ELF class, byte order and machine. A wrong artifact (armv7 for
/// an aarch64 box, a script, an archive) is refused before it is installed.
pub fn check_executable(candidate: &Path, reference: &Path) -> Result<(), ExecutableError> {
    let want = ElfId::parse(&elf_header(reference)?).map_err(ExecutableError::Reference)?;
    let got = ElfId::parse(&elf_header(candidate)?).map_err(ExecutableError::Artifact)?;
    if got != want {
        return Err(ExecutableError::Foreign { got, want });
    }
    Ok(())
}

/// The first 20 bytes of `p` (fewer if it is shorter): as far as
/// [`ElfId::parse`] reads.
fn elf_header(p: &Path) -> Result<Vec<u8>, ExecutableError> {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(20);
        File::open(p)?.take(20).read_to_end(&mut buf)?;
        Ok(buf)
    };
    read().map_err(|source| ExecutableError::Read {
        path: p.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(class: u8, data: u8, kind: u16, machine: u16) -> Vec<u8> {
        let mut h = b"\x7fELF".to_vec();
        h.extend([class, data, 1, 0]);
        h.extend([0u8; 8]);
        if data == 2 {
            h.extend(kind.to_be_bytes());
            h.extend(machine.to_be_bytes());
        } else {
            h.extend(kind.to_le_bytes());
            h.extend(machine.to_le_bytes());
        }
        h
    }

    #[test]
    fn elf_headers() {
        let aarch64 = ElfId {
            class: 2,
            data: 1,
            machine: 183,
        };
        assert_eq!(ElfId::parse(&header(2, 1, 3, 183)), Ok(aarch64));
        assert_eq!(ElfId::parse(&header(2, 1, 2, 183)), Ok(aarch64));
        let table: [(Vec<u8>, &str); 5] = [
            (
                b"#!/bin/sh\nexit 1\n\0\0\0\0".to_vec(),
                "not an ELF executable",
            ),
            (b"\x7fELF".to_vec(), "not an ELF executable"),
            (header(2, 1, 1, 183), "not an executable (type 1)"),
            (header(2, 7, 3, 183), "unknown byte order"),
            (Vec::new(), "not an ELF executable"),
        ];
        for (bytes, want) in table {
            let err = ElfId::parse(&bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        assert_eq!(
            ElfId::parse(&header(1, 2, 2, 40)).unwrap().machine,
            40,
            "big-endian fields"
        );
    }

    #[test]
    fn the_running_test_binary_matches_itself_and_not_a_script_or_another_machine() {
        let me = std::env::current_exe().unwrap();
        check_executable(&me, &me).unwrap();
        let d = tempfile::tempdir().unwrap();
        let script = d.path().join("s");
        fs::write(&script, "#!/bin/sh\nexit 1\n").unwrap();
        let err = check_executable(&script, &me).unwrap_err().to_string();
        assert!(err.contains("not an ELF executable"), "{err}");
        let mut own = fs::read(&me).unwrap()[..20].to_vec();
        let machine = if own[18] == 183 { 62u16 } else { 183u16 };
        own[18..20].copy_from_slice(&machine.to_le_bytes());
        let other = d.path().join("other");
        fs::write(&other, &own).unwrap();
        let err = check_executable(&other, &me).unwrap_err().to_string();
        assert!(err.contains("this device runs"), "{err}");
    }

    #[test]
    fn state_round_trips_and_a_damaged_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let u = Updates::new(UpdateConfig {
            dir: d.path().join("update"),
            keep: 3,
            trial_window: std::time::Duration::from_secs(60),
            max_bytes: 1 << 20,
        });
        assert_eq!(u.load().unwrap(), State::default());
        assert!(!u.state_file().exists(), "reading writes nothing");
        u.modify(|s| s.entry = Some("1.0.0".into())).unwrap();
        assert_eq!(u.load().unwrap().entry.as_deref(), Some("1.0.0"));
        fs::write(u.state_file(), "{\"v\":1,").unwrap();
        assert!(u.load().unwrap_err().to_string().contains("damaged"));
        assert!(u.modify(|_| ()).is_err(), "never overwritten blindly");
        // Set aside (kept for inspection) by the one reader that may.
        let (s, e) = u.load_or_set_aside().unwrap();
        assert_eq!(s, State::default());
        assert!(e.is_some_and(|e| e.to_string().contains("damaged")));
        assert_eq!(
            fs::read(u.state_file().with_extension("json.damaged")).unwrap(),
            b"{\"v\":1,"
        );
        assert!(!u.state_file().exists());
        assert!(u.load_or_set_aside().unwrap().1.is_none());
    }

    #[test]
    fn this_process_runs_from_its_own_binary_only() {
        let me = std::env::current_exe().unwrap();
        assert!(runs_from(&me));
        let d = tempfile::tempdir().unwrap();
        let copy = d.path().join("copy");
        fs::copy(&me, &copy).unwrap();
        assert!(!runs_from(&copy), "a copy is another file");
        assert!(!runs_from(&d.path().join("missing")));
    }

    #[test]
    fn copies_are_executable_and_complete() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::write(&src, vec![7u8; 100_000]).unwrap();
        let dest = d.path().join("dest");
        assert_eq!(copy_executable(&src, &dest).unwrap(), 100_000);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(fs::read(&dest).unwrap(), fs::read(&src).unwrap());
        assert!(copy_executable(&d.path().join("missing"), &dest).is_err());
        assert_eq!(fs::read(&dest).unwrap().len(), 100_000, "untouched");
    }
}
