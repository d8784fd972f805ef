//! `file.deploy` from a local HTTPS server with a test CA, `file.delete`,
//! and every way a path or a download is refused without harm.

use std::collections::HashMap;

use serde_json::json;

use picket_protocol::{Action, DeployArgs, Format, PathArgs, encode};

use super::file_server::{File, FileServer, sha256_hex};
use super::stack::{Publisher, Stack, reason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_delete_confined_to_the_allowed_directory() {
    let video = b"not really a video, but the agent cannot tell".repeat(1000);
    let other = b"another file".to_vec();
    let big = vec![7u8; 300 * 1024];
    let server = FileServer::start(HashMap::from([
        (
            "/v.mp4",
            File {
                body: video.clone(),
                length: true,
            },
        ),
        (
            "/other.bin",
            File {
                body: other.clone(),
                length: true,
            },
        ),
        (
            "/big-announced.bin",
            File {
                body: big.clone(),
                length: true,
            },
        ),
        (
            "/big-streamed.bin",
            File {
                body: big.clone(),
                length: false,
            },
        ),
    ]))
    .await;
    let mut s = Stack::start("pi-files", "").await;
    let ca = s.path("download-ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let ca = ca.display().to_string();
    // Symlinks out of the allowed directory, to a directory and to a file.
    let files = s.path("files");
    let outside = s.path("outside");
    std::fs::create_dir_all(files.join("videos")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "keep me").unwrap();
    std::os::unix::fs::symlink(&outside, files.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), files.join("link.mp4")).unwrap();
    s.agent_env(&[
        ("PICKET_COMMANDS_ALLOWED", "file.deploy,file.delete"),
        ("PICKET_COMMANDS_FILE_CA_FILE", &ca),
        ("PICKET_COMMANDS_FILE_MAX_BYTES", "256KiB"),
    ]);
    s.agent_online().await;
    let url = |p: &str| format!("{}{p}", server.base);
    let deploy =
        |u: String, sha: String, dest: &str| json!({"url": u, "sha256": sha, "dest": dest});

    // Success: relative to the first allowed directory.
    let ok = s
        .run(
            "file.deploy",
            deploy(url("/v.mp4"), sha256_hex(&video), "videos/v.mp4"),
        )
        .await;
    assert_eq!(ok["state"], "succeeded", "{ok}");
    assert_eq!(std::fs::read(files.join("videos/v.mp4")).unwrap(), video);

    // Checksum mismatch: failed, the old file intact, no temporary left.
    let bad = s
        .run(
            "file.deploy",
            deploy(url("/other.bin"), sha256_hex(b"x"), "videos/v.mp4"),
        )
        .await;
    assert_eq!(bad["state"], "failed", "{bad}");
    assert!(reason(&bad, "failed").contains("sha256 mismatch"), "{bad}");
    assert_eq!(std::fs::read(files.join("videos/v.mp4")).unwrap(), video);

    // Oversize, announced and streamed: failed, partial file removed.
    for path in ["/big-announced.bin", "/big-streamed.bin"] {
        let r = s
            .run(
                "file.deploy",
                deploy(url(path), sha256_hex(&big), "videos/big.bin"),
            )
            .await;
        assert_eq!(r["state"], "failed", "{path}: {r}");
        assert!(
            reason(&r, "failed").contains("file_max_bytes"),
            "{path}: {r}"
        );
        assert!(!files.join("videos/big.bin").exists());
    }
    let leftovers: Vec<_> = std::fs::read_dir(files.join("videos"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["v.mp4"], "temporary files left behind");

    // Confinement: each rejected by the agent, nothing written or
    // deleted. Envelopes are made by hand: the collector's API refuses
    // `..` itself (checked below) and would never send them.
    let publisher = Publisher::connect(s.broker).await;
    let escapes = [
        ("../outside/secret", "`..`"),
        ("videos/../../outside/secret", "`..`"),
        (
            "/etc/picket-test-never-written",
            "outside the allowed directories",
        ),
        ("escape/secret", "symbolic link"),
        ("link.mp4", "symbolic link"),
    ];
    for (dest, why) in escapes {
        let actions = [
            Action::FileDeploy(DeployArgs {
                url: url("/other.bin"),
                sha256: sha256_hex(&other),
                dest: dest.into(),
            }),
            Action::FileDelete(PathArgs { path: dest.into() }),
        ];
        for action in actions {
            let c = s.envelope(action, |_| {});
            let payload = encode(&c, Format::Cbor).unwrap();
            publisher.publish(&s.cmd_topic(&c.id), payload, false).await;
            let r = s.settled(&c.id).await;
            assert_eq!(r["state"], "rejected", "{dest}: {r}");
            assert!(reason(&r, "rejected").contains(why), "{dest}: {r}");
        }
    }
    let (status, body) = s
        .post(
            "/api/devices/pi-files/commands",
            json!({"name": "file.delete", "args": {"path": "../outside/secret"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "keep me"
    );
    assert!(!std::path::Path::new("/etc/picket-test-never-written").exists());

    // Delete inside: gone.
    let del = s.run("file.delete", json!({"path": "videos/v.mp4"})).await;
    assert_eq!(del["state"], "succeeded", "{del}");
    assert!(!files.join("videos/v.mp4").exists());
    s.stop_agent();
}
