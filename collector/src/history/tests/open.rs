use rusqlite::Connection;

use super::*;
use crate::history::{HistoryError, SCHEMA_VERSION};

#[test]
fn migrates_an_empty_file_and_reopens_an_existing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.db");
    // An empty file (zero bytes) is an empty SQLite database.
    std::fs::write(&path, b"").expect("write");
    let (mut writer, snapshot) = open(&path).expect("open");
    assert_eq!(snapshot, Snapshot::default());
    writer
        .commit(&WriteBatch {
            samples: vec![sample("pi-1", 1, 1_000, &[("cpu", 1.0)])],
            ..WriteBatch::default()
        })
        .expect("commit");
    drop(writer);

    let conn = Connection::open(&path).expect("sqlite");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    drop(conn);

    let (_writer, _) = open(&path).expect("reopen");
    let r = Reader::open(&path).expect("reader");
    assert_eq!(series(&r, "pi-1", "cpu"), [(1_000, 1.0)]);
}

#[test]
fn creates_a_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    open(&path).expect("open");
    assert!(path.exists());
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");

    let missing = dir.path().join("no/such/dir/h.db");
    let err = open(&missing).map(|_| ()).expect_err("missing directory");
    assert!(matches!(err, HistoryError::NoDirectory { .. }), "{err:?}");
    assert!(
        err.to_string().contains("directory does not exist"),
        "{err}"
    );
    let err = Reader::open(&missing)
        .map(|_| ())
        .expect_err("missing directory");
    assert!(matches!(err, HistoryError::NoDirectory { .. }), "{err:?}");

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "this is not a database, just some text\n".repeat(100),
    )
    .expect("write");
    let err = open(&text).map(|_| ()).expect_err("not a database");
    assert!(matches!(err, HistoryError::NotADatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
    let err = Reader::open(&text).map(|_| ()).expect_err("not a database");
    assert!(matches!(err, HistoryError::NotADatabase { .. }), "{err:?}");

    let foreign = dir.path().join("other.db");
    Connection::open(&foreign)
        .expect("sqlite")
        .execute_batch("CREATE TABLE t (x)")
        .expect("create");
    let err = open(&foreign).map(|_| ()).expect_err("foreign database");
    assert!(matches!(err, HistoryError::NotHistory { .. }), "{err:?}");

    let newer = dir.path().join("newer.db");
    drop(open(&newer).expect("open"));
    Connection::open(&newer)
        .expect("sqlite")
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("bump");
    let err = open(&newer).map(|_| ()).expect_err("newer schema");
    assert!(matches!(err, HistoryError::Schema { found, .. } if found == SCHEMA_VERSION + 1));
    let err = Reader::open(&newer).map(|_| ()).expect_err("newer schema");
    assert!(matches!(err, HistoryError::Schema { .. }), "{err:?}");

    // A reader needs the writer to have created the database.
    let err = Reader::open(&dir.path().join("absent.db"))
        .map(|_| ())
        .expect_err("absent");
    assert!(matches!(err, HistoryError::Open { .. }), "{err:?}");
}

#[test]
fn refuses_times_sqlite_cannot_hold() {
    let mut db = Db::new();
    let err = db
        .writer
        .commit(&WriteBatch {
            samples: vec![sample("pi-1", 1, u64::MAX, &[("cpu", 1.0)])],
            ..WriteBatch::default()
        })
        .expect_err("out of range");
    assert!(matches!(err, HistoryError::OutOfRange { .. }), "{err:?}");
    let err = db.writer.prune(u64::MAX, 10).expect_err("out of range");
    assert!(matches!(err, HistoryError::OutOfRange { .. }), "{err:?}");
}

#[test]
fn a_damaged_database_is_a_clear_error_and_never_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.db");
    let (mut writer, _) = open(&path).expect("open");
    for i in 0..200 {
        writer
            .commit(&WriteBatch {
                samples: vec![sample(&format!("pi-{i}"), 1, 1_000, &[("cpu", 1.0)])],
                ..WriteBatch::default()
            })
            .expect("commit");
    }
    drop(writer);
    // Everything in the database file (no WAL left after a clean close),
    // then the device dictionary's root page overwritten, as a bad sector
    // would.
    let (root, page): (i64, i64) = {
        let conn = Connection::open(&path).expect("sqlite");
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'device'",
                [],
                |r| r.get(0),
            )
            .expect("root page");
        let page = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .expect("page size");
        (root, page)
    };
    let (root, page) = (root as usize, page as usize);
    let mut bytes = std::fs::read(&path).expect("read");
    for b in &mut bytes[(root - 1) * page..root * page] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).expect("damage");

    let err = open(&path).map(|_| ()).expect_err("damaged");
    assert!(matches!(err, HistoryError::Damaged { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("restore it from a backup"), "{text}");
    assert_eq!(std::fs::read(&path).expect("read"), bytes, "left as it was");

    // A header that is not SQLite's: the same advice.
    std::fs::write(&path, vec![0x42; 8192]).expect("garbage");
    let err = open(&path).map(|_| ()).expect_err("not a database");
    assert!(
        err.to_string().contains("restore it from a backup"),
        "{err}"
    );
}
