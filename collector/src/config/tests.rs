use std::path::Path;

use super::*;

fn parse_ok(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let (raw, _) = parse(text, Path::new("test.toml"), vars)?;
    validate(&raw)
}

#[test]
fn the_default_file_is_the_defaults() {
    let (raw, unknown) = parse(DEFAULT_TOML, Path::new("default.toml"), []).unwrap();
    assert_eq!(raw, RawConfig::default());
    assert!(unknown.is_empty());
    let c = validate(&raw).unwrap();
    assert_eq!(
        c.embedded.as_ref().unwrap().listen.to_string(),
        "127.0.0.1:1883"
    );
    assert_eq!(c.link.broker.url, "mqtt://127.0.0.1:1883");
    assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
    assert!(c.api.open());
    assert_eq!(c.engine.presence_timeout.as_secs(), 300);
    assert_eq!(c.notify.cooldown.as_secs(), 3600);
}

#[test]
fn environment_overrides() {
    let c = parse_ok(
        "",
        &[
            ("PICKET_BROKER_URL", "mqtt://broker.example:1884"),
            ("PICKET_HTTP_LISTEN", "0.0.0.0:9000"),
            ("PICKET_STORAGE_PATH", "/tmp/x.db"),
            ("PICKET_API_ADMIN_TOKEN", "0123456789abcdef-admin"),
            ("PICKET_API_READ_TOKEN", "0123456789abcdef-read"),
        ],
    )
    .unwrap();
    assert!(c.embedded.is_none());
    assert_eq!(
        (c.link.broker.host.as_str(), c.link.broker.port),
        ("broker.example", 1884)
    );
    assert_eq!(c.http_listen.port(), 9000);
    assert_eq!(c.storage_path, Path::new("/tmp/x.db"));
    assert_eq!(c.api.admin.as_deref(), Some("0123456789abcdef-admin"));
    assert_eq!(c.api.read.as_deref(), Some("0123456789abcdef-read"));
    let c = parse_ok("", &[("PICKET_BROKER_LISTEN", "127.0.0.1:18830")]).unwrap();
    assert_eq!(c.link.broker.port, 18830);
    let e = parse_ok(
        "",
        &[
            ("PICKET_BROKER_URL", "mqtts://broker.example"),
            ("PICKET_BROKER_CA_FILE", "/nonexistent/ca.pem"),
        ],
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("broker.ca_file"), "{e}");
}

#[test]
fn errors_name_the_key_and_origin() {
    type Env<'a> = &'a [(&'a str, &'a str)];
    let table: [(&str, Env, &str); 15] = [
        ("[http]\nlisten = \"nowhere\"\n", &[], "http.listen"),
        (
            "",
            &[("PICKET_BROKER_LISTEN", "localhost")],
            "broker.listen",
        ),
        ("[broker]\nurl = \"tcp://x\"\n", &[], "broker.url"),
        ("[api]\nadmin_token = \"short\"\n", &[], "api.admin_token"),
        (
            "[api]\nadmin_token = \"0123456789abcdef\"\nread_token = \"0123456789abcdef\"\n",
            &[],
            "api.read_token",
        ),
        ("[storage]\nretention = \"1m\"\n", &[], "storage.retention"),
        ("[presence]\ntimeout = \"soon\"\n", &[], "presence.timeout"),
        ("[payload]\nformat = \"xml\"\n", &[], "payload.format"),
        (
            "[[labels]]\ndevices = \"a b\"\nlabels = {}\n",
            &[],
            "labels[0].devices",
        ),
        ("[broker]\nbogus = 1\n", &[], "broker"),
        (
            "[commands]\nprivate_key_file = \"/etc/hostname\"\n",
            &[],
            "commands.private_key_file",
        ),
        (
            "[commands]\ndefault_ttl = \"8d\"\n",
            &[],
            "commands.default_ttl",
        ),
        (
            "[[rules]]\nname = \"service_down\"\nremedy = { command = \"format_disk\" }\n",
            &[],
            "rules[0].remedy",
        ),
        (
            "[[rules]]\nname = \"service_down\"\nremedy = { command = \"service.restart\" }\n",
            &[],
            "rules[0].remedy",
        ),
        (
            "[[rules]]\nname = \"service_down\"\nremedy = { command = \"ping\", lmit = 3 }\n",
            &[],
            "rules",
        ),
    ];
    for (text, env, key) in table {
        let e = parse_ok(text, env).expect_err(text);
        assert!(
            e.key().is_some_and(|k| k.starts_with(key)),
            "{text:?}: expected key {key}, got {e}"
        );
    }
    let e = parse_ok("", &[("PICKET_HTTP_LISTEN", "nope")]).unwrap_err();
    assert_eq!(e.key(), Some("http.listen"));
}

#[test]
fn labels_by_glob() {
    let c = parse_ok(
        "[[labels]]\ndevices = \"club-cesson-*\"\nlabels = { club = \"CESSON\" }\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.engine.labels.len(), 1);
    assert!(c.engine.labels[0].0.matches("club-cesson-01"));
    assert!(!c.engine.labels[0].0.matches("club-rennes-01"));
}
