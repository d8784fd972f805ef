use std::os::unix::fs::PermissionsExt;

use super::*;

fn env() -> Vec<(String, String)> {
    vec![("PICKET_DEVICE_ID".into(), "pi-first".into())]
}

struct Card {
    _dir: tempfile::TempDir,
    boot: PathBuf,
    etc: PathBuf,
}

impl Card {
    fn new() -> Card {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot/firmware");
        let etc = dir.path().join("etc/picket");
        fs::create_dir_all(&boot).unwrap();
        Card {
            _dir: dir,
            boot,
            etc,
        }
    }
    fn source(&self) -> PathBuf {
        self.boot.join("picket.toml")
    }
    fn target(&self) -> PathBuf {
        self.etc.join("agent.toml")
    }
    /// The files left in the configuration directory.
    fn etc_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.etc)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

const GOOD: &str = "[broker]\nurl = \"mqtt://broker.example:1883\"\n";

#[test]
fn no_file_is_the_usual_start() {
    let card = Card::new();
    assert_eq!(
        install(&card.source(), &card.target(), env()).unwrap(),
        Outcome::Absent
    );
    assert!(!card.etc.exists());
}

#[test]
fn a_valid_file_replaces_the_configuration_and_leaves_the_card() {
    let card = Card::new();
    fs::create_dir_all(&card.etc).unwrap();
    fs::write(card.target(), "[broker]\nurl = \"mqtt://old:1883\"\n").unwrap();
    fs::write(card.source(), GOOD).unwrap();

    let outcome = install(&card.source(), &card.target(), env()).unwrap();
    assert_eq!(
        outcome,
        Outcome::Installed {
            source: card.source(),
            target: card.target()
        }
    );
    assert_eq!(fs::read_to_string(card.target()).unwrap(), GOOD);
    let mode = fs::metadata(card.target()).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert!(!card.source().exists(), "the card's copy is deleted");
    assert_eq!(card.etc_files(), ["agent.toml"], "no temporary file left");

    // The next start finds nothing and changes nothing.
    assert_eq!(
        install(&card.source(), &card.target(), env()).unwrap(),
        Outcome::Absent
    );
    assert_eq!(fs::read_to_string(card.target()).unwrap(), GOOD);
}

#[test]
fn the_configuration_directory_is_created_when_missing() {
    let card = Card::new();
    fs::write(card.source(), GOOD).unwrap();
    install(&card.source(), &card.target(), env()).unwrap();
    assert_eq!(fs::read_to_string(card.target()).unwrap(), GOOD);
}

#[test]
fn an_invalid_file_stays_on_the_card_and_changes_nothing() {
    let old = "[broker]\nurl = \"mqtt://old:1883\"\n";
    let table: &[(&str, &str)] = &[
        ("[sampling]\ninterval = \"fast\"\n", "sampling.interval"),
        ("[broker]\nurl = \"http://x\"\n", "broker.url"),
        ("[nonsense]\nkey = 1\n", "nonsense"),
        ("[broker\n", "line 1"),
        (
            "[first_boot]\npath = \"relative.toml\"\n",
            "first_boot.path",
        ),
    ];
    for (text, named) in table {
        let card = Card::new();
        fs::create_dir_all(&card.etc).unwrap();
        fs::write(card.target(), old).unwrap();
        fs::write(card.source(), text).unwrap();
        let err = install(&card.source(), &card.target(), env()).unwrap_err();
        assert!(err.is_invalid_config(), "{text}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(named), "{text}: {msg}");
        assert!(msg.contains("picket.toml"), "{msg}");
        assert!(msg.contains("left in place"), "{msg}");
        assert_eq!(fs::read_to_string(card.source()).unwrap(), *text);
        assert_eq!(fs::read_to_string(card.target()).unwrap(), old);
        assert_eq!(card.etc_files(), ["agent.toml"]);
    }
}

#[test]
fn the_environment_takes_part_in_the_check() {
    let card = Card::new();
    fs::write(card.source(), GOOD).unwrap();
    let mut vars = env();
    vars.push(("PICKET_SAMPLING_INTERVAL".into(), "fast".into()));
    let err = install(&card.source(), &card.target(), vars).unwrap_err();
    assert!(
        err.to_string().contains("PICKET_SAMPLING_INTERVAL"),
        "{err}"
    );
    assert!(card.source().exists());
}

#[test]
fn a_file_saved_by_a_windows_editor_is_accepted() {
    let card = Card::new();
    let text = "\u{feff}[broker]\r\nurl = \"mqtt://broker.example:1883\"\r\n";
    fs::write(card.source(), text).unwrap();
    install(&card.source(), &card.target(), env()).unwrap();
    let installed = fs::read_to_string(card.target()).unwrap();
    assert!(!installed.starts_with('\u{feff}'));
    assert!(installed.contains("broker.example"));
}

#[test]
fn what_is_not_a_small_text_file_is_refused() {
    let card = Card::new();
    fs::create_dir(card.source()).unwrap();
    let err = install(&card.source(), &card.target(), env()).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");

    let card = Card::new();
    fs::write(card.source(), [0xff, 0xfe, 0x5b, 0x00]).unwrap();
    let err = install(&card.source(), &card.target(), env()).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");

    let card = Card::new();
    let big = format!("# {}\n", "x".repeat(MAX_BYTES as usize));
    fs::write(card.source(), big).unwrap();
    let err = install(&card.source(), &card.target(), env()).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    assert!(card.source().exists());
    assert!(!card.target().exists());
}

#[test]
fn a_symlink_is_not_followed() {
    let card = Card::new();
    let elsewhere = card.boot.join("elsewhere.toml");
    fs::write(&elsewhere, GOOD).unwrap();
    std::os::unix::fs::symlink(&elsewhere, card.source()).unwrap();
    let err = install(&card.source(), &card.target(), env()).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(elsewhere.exists());
}

#[test]
fn a_target_that_cannot_be_replaced_puts_the_file_back() {
    let card = Card::new();
    fs::write(card.source(), GOOD).unwrap();
    // A directory where the configuration file should be: the rename fails
    // after the card's copy was deleted.
    fs::create_dir_all(card.target().join("x")).unwrap();
    let err = install(&card.source(), &card.target(), env()).unwrap_err();
    assert!(!err.is_invalid_config());
    assert!(
        err.to_string().contains("replace the configuration file"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(card.source()).unwrap(), GOOD);
    assert_eq!(card.etc_files(), ["agent.toml"], "no temporary file left");
}
