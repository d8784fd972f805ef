use std::path::Path;

use super::*;

fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A raw config that validates on any machine: device id given, queue in /tmp.
fn parse_ok(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut all = vec![("PICKET_DEVICE_ID", "pi-test")];
    all.extend_from_slice(env);
    let (raw, _) = parse(text, Path::new("test.toml"), vars(&all))?;
    validate(raw)
}

#[test]
fn the_commented_default_is_the_default() {
    let (raw, unknown) = parse(DEFAULT_TOML, Path::new("default.toml"), vec![]).unwrap();
    assert_eq!(raw, RawConfig::default());
    assert!(unknown.is_empty());
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let c = parse_ok("", &[]).unwrap();
    assert_eq!(c.broker.host, "localhost");
    assert_eq!(c.broker.port, 1883);
    assert_eq!(c.sampling_interval, std::time::Duration::from_secs(10));
    assert_eq!(c.queue.max_bytes, 64 << 20);
    assert_eq!(c.broker.client_id, "picket-pi-test");
    assert_eq!(c.format, Format::Cbor);
}

#[test]
fn environment_overrides_the_file() {
    let text = "[broker]\nurl = \"mqtt://file:1883\"\n[sampling]\ninterval = \"5s\"\n";
    let c = parse_ok(
        text,
        &[
            ("PICKET_BROKER_URL", "mqtt://env.example:2883"),
            ("PICKET_QUEUE_DIR", "/data/q"),
            ("PICKET_SAMPLING_INTERVAL", "500ms"),
            ("PICKET_HOST_ROOT", "/host"),
            ("PICKET_PAYLOAD_FORMAT", "json"),
            ("PICKET_UPLINK_INFLIGHT", "4"),
            ("PICKET_SERVICES_WATCH", "kiosk.service, ssh.service"),
            ("PICKET_QUEUE_HOT_DIR", "/run/picket/hot"),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.broker.host.as_str(), c.broker.port),
        ("env.example", 2883)
    );
    assert_eq!(c.queue.dir, Path::new("/data/q"));
    assert_eq!(c.sampling_interval.as_millis(), 500);
    assert_eq!(c.sensors.host_root, Path::new("/host"));
    assert_eq!(c.format, Format::Json);
    assert_eq!(c.uplink.inflight, 4);
    assert_eq!(c.sensors.services, ["kiosk.service", "ssh.service"]);
    assert_eq!(
        c.queue.hot_dir.as_deref(),
        Some(Path::new("/run/picket/hot"))
    );
}

#[test]
fn unknown_environment_variables_are_reported() {
    let (_, unknown) = parse(
        "",
        Path::new("t"),
        vars(&[
            ("PICKET_BROKER_URLL", "x"),
            ("PICKET_CONFIG", "/x"),
            ("HOME", "/"),
        ]),
    )
    .unwrap();
    assert_eq!(unknown, ["PICKET_BROKER_URLL"]);
}

/// (file text, environment, key the error must name)
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn errors_name_the_key() {
    let table: &[Case] = &[
        ("[sampling]\ninterval = \"10\"\n", &[], "sampling.interval"),
        ("[sampling]\ninterval = 10\n", &[], "sampling.interval"),
        ("[broker]\nurl = \"http://x\"\n", &[], "broker.url"),
        ("[broker]\nurl = \"mqtt://x:0\"\n", &[], "broker.url"),
        ("[broker]\nurll = \"mqtt://x\"\n", &[], "broker"),
        ("[queue]\nmax_bytes = \"64MB2\"\n", &[], "queue.max_bytes"),
        (
            "[queue]\nsegment_bytes = \"1MiB\"\nmax_bytes = \"1MiB\"\n",
            &[],
            "queue.max_bytes",
        ),
        ("[payload]\nformat = \"xml\"\n", &[], "payload.format"),
        ("", &[("PICKET_UPLINK_INFLIGHT", "many")], "uplink.inflight"),
        ("", &[("PICKET_UPLINK_INFLIGHT", "1000")], "uplink.inflight"),
        ("", &[("PICKET_DEVICE_ID", "bad/id")], "device.id"),
        (
            "[broker]\npassword_file = \"/nonexistent\"\nusername = \"u\"\n",
            &[],
            "broker.password_file",
        ),
        (
            "[broker]\npassword_file = \"/etc/hostname\"\n",
            &[],
            "broker.username",
        ),
        (
            "[broker]\nurl = \"mqtts://x\"\nca_file = \"/nonexistent\"\n",
            &[],
            "broker.ca_file",
        ),
        (
            "[broker]\nclient_cert = \"/etc/hostname\"\n",
            &[],
            "broker.client_key",
        ),
        ("[host]\nroot = \"relative\"\n", &[], "host.root"),
        ("[queue]\nhot_dir = \"run/hot\"\n", &[], "queue.hot_dir"),
        (
            "[queue]\ndir = \"/q\"\nhot_dir = \"/q\"\n",
            &[],
            "queue.hot_dir",
        ),
        ("[services]\nwatch = [\"a b\"]\n", &[], "services.watch"),
        (
            "",
            &[("PICKET_COMMANDS_ALLOWED", "ping,format_disk")],
            "commands.allowed",
        ),
        (
            "[commands]\npublic_key_file = \"/etc/hostname\"\n",
            &[],
            "commands.public_key_file",
        ),
        (
            "[commands]\npublic_key_file = \"/nonexistent\"\n",
            &[],
            "commands.public_key_file",
        ),
        (
            "[commands]\nstate_dir = \"rel\"\n",
            &[],
            "commands.state_dir",
        ),
        ("[commands]\nconcurrency = 0\n", &[], "commands.concurrency"),
        (
            "[commands]\nservices = [\"-x\"]\n",
            &[],
            "commands.services",
        ),
        (
            "[commands]\nfile_dirs = [\"/\"]\n",
            &[],
            "commands.file_dirs",
        ),
        (
            "[commands]\nfile_dirs = [\"/srv/../etc\"]\n",
            &[],
            "commands.file_dirs",
        ),
        ("[commands]\nreboot = []\n", &[], "commands.reboot"),
        (
            "[commands]\nfile_ca_file = \"/etc/hostname\"\n",
            &[],
            "commands.file_ca_file",
        ),
        (
            "[commands]\nconfig_rollback_after = \"1s\"\n",
            &[],
            "commands.config_rollback_after",
        ),
        (
            "",
            &[("PICKET_DOCKER_SOCKET", "docker.sock")],
            "docker.socket",
        ),
        ("", &[("PICKET_DOCKER_LABEL", "=x")], "docker.label"),
        ("", &[("PICKET_DOCKER_LABEL", "a b")], "docker.label"),
        ("", &[("PICKET_DOCKER_NAMES", "web/1")], "docker.names"),
        ("", &[("PICKET_DOCKER_NAMES", "[ab]")], "docker.names"),
        (
            "",
            &[("PICKET_DOCKER_STATS_INTERVAL", "500ms")],
            "docker.stats_interval",
        ),
        ("", &[("PICKET_DOCKER_RETRY_MAX", "0s")], "docker.retry_max"),
        (
            "",
            &[("PICKET_DOCKER_ENABLED", "perhaps")],
            "docker.enabled",
        ),
        (
            "[[docker.exec]]\nname = \"a b\"\ncommand = [\"id\"]\n",
            &[],
            "docker.exec[0].name",
        ),
        (
            "[[docker.exec]]\nname = \"a\"\ncommand = []\n",
            &[],
            "docker.exec[0].command",
        ),
        (
            "[[docker.exec]]\nname = \"a\"\ncommand = \"nginx -s reload\"\n",
            &[],
            "docker",
        ),
        (
            "[[docker.exec]]\nname = \"a\"\ncommand = [\"id\"]\n[[docker.exec]]\nname = \"a\"\ncommand = [\"id\"]\n",
            &[],
            "docker.exec[1].name",
        ),
        (
            "[[docker.exec]]\nname = \"a\"\ncommand = [\"id\"]\ncontainers = [\"a/b\"]\n",
            &[],
            "docker.exec[0].containers",
        ),
        (
            "[[docker.exec]]\nname = \"a\"\ncommand = [\"id\"]\nshell = true\n",
            &[],
            "docker",
        ),
    ];
    for (text, env, key) in table {
        let mut all = vec![("PICKET_DEVICE_ID", "pi-test")];
        all.extend_from_slice(env);
        let err = parse(text, Path::new("t"), vars(&all))
            .and_then(|(raw, _)| validate(raw))
            .expect_err(text);
        let got = err.key().unwrap_or("");
        assert!(got.starts_with(key), "{text:?} {env:?}: got {err}");
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn syntax_errors_say_where() {
    let err = parse("[broker\nurl=1", Path::new("agent.toml"), vec![]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("agent.toml") && msg.contains("line 1"),
        "{msg}"
    );
}

#[test]
fn the_hash_follows_the_settings() {
    let a = parse_ok("", &[]).unwrap();
    let b = parse_ok("", &[]).unwrap();
    let c = parse_ok("[sampling]\ninterval = \"11s\"\n", &[]).unwrap();
    assert_eq!(a.hash, b.hash);
    assert_ne!(a.hash, c.hash);
    assert_eq!(a.hash.len(), 16);
}

#[test]
fn led_gpio_and_status_sections() {
    let c = parse_ok("", &[]).unwrap();
    assert_eq!(c.led, LedConfig::Sysfs("/sys/class/leds/ACT".into()));
    assert!(c.gpio.inputs.is_empty() && c.gpio.outputs.is_empty());
    assert_eq!(
        c.status_socket.as_deref(),
        Some(Path::new("/run/picket/agent.sock"))
    );

    let c = parse_ok(
        "",
        &[
            ("PICKET_LED_BACKEND", "gpio"),
            ("PICKET_LED_LINE", "gpiochip0:26"),
            ("PICKET_LED_ACTIVE_LOW", "true"),
            ("PICKET_STATUS_SOCKET", ""),
        ],
    )
    .unwrap();
    assert_eq!(
        c.led,
        LedConfig::Gpio {
            line: LineRef::Offset {
                chip: "gpiochip0".into(),
                offset: 26
            },
            active_low: true
        }
    );
    assert_eq!(c.status_socket, None);
    let c = parse_ok("", &[("PICKET_LED_SYSFS_PATH", "/sys/class/leds/led0")]).unwrap();
    assert_eq!(c.led, LedConfig::Sysfs("/sys/class/leds/led0".into()));

    let text = r#"
[[gpio.input]]
name = "door"
line = "GPIO17"
bias = "pull-up"
active_low = true
debounce = "10ms"

[[gpio.input]]
name = "tamper"
line = "gpiochip0:22"

[[gpio.output]]
name = "relay"
line = "GPIO27"
initial = true
"#;
    let c = parse_ok(text, &[]).unwrap();
    assert_eq!(
        c.gpio.inputs,
        [
            InputSpec {
                name: "door".into(),
                line: LineRef::Name("GPIO17".into()),
                bias: Bias::PullUp,
                active_low: true,
                debounce: std::time::Duration::from_millis(10),
            },
            InputSpec {
                name: "tamper".into(),
                line: LineRef::Offset {
                    chip: "gpiochip0".into(),
                    offset: 22
                },
                bias: Bias::AsIs,
                active_low: false,
                debounce: std::time::Duration::ZERO,
            }
        ]
    );
    assert_eq!(
        c.gpio.outputs,
        [OutputSpec {
            name: "relay".into(),
            line: LineRef::Name("GPIO27".into()),
            active_low: false,
            initial: true,
        }]
    );
}

#[test]
fn led_gpio_and_status_errors_name_the_key() {
    let input =
        |extra: &str| format!("[[gpio.input]]\nname = \"door\"\nline = \"GPIO17\"\n{extra}");
    type Row = (String, Vec<(&'static str, &'static str)>, &'static str);
    let table: Vec<Row> = vec![
        (
            String::new(),
            vec![("PICKET_LED_BACKEND", "neon")],
            "led.backend",
        ),
        (
            String::new(),
            vec![("PICKET_LED_BACKEND", "gpio")],
            "led.line",
        ),
        (
            String::new(),
            vec![("PICKET_LED_SYSFS_PATH", "leds/ACT")],
            "led.sysfs_path",
        ),
        (
            String::new(),
            vec![("PICKET_STATUS_SOCKET", "agent.sock")],
            "status.socket",
        ),
        (input("bias = \"up\"\n"), vec![], "gpio.input[0].bias"),
        (
            input("debounce = \"2s\"\n"),
            vec![],
            "gpio.input[0].debounce",
        ),
        (input("colour = 1\n"), vec![], "gpio.input"),
        (
            "[[gpio.input]]\nname = \"a b\"\nline = \"GPIO1\"\n".into(),
            vec![],
            "gpio.input[0].name",
        ),
        (
            "[[gpio.input]]\nname = \"x\"\nline = \"\"\n".into(),
            vec![],
            "gpio.input[0].line",
        ),
        (
            "[[gpio.input]]\nname = \"x\"\n".into(),
            vec![],
            "gpio.input",
        ),
        (
            input("") + "[[gpio.output]]\nname = \"door\"\nline = \"GPIO2\"\n",
            vec![],
            "gpio.output[0].name",
        ),
        (
            input("") + "[[gpio.output]]\nname = \"relay\"\nline = \"GPIO17\"\n",
            vec![],
            "gpio.output[0].line",
        ),
        (
            input(""),
            vec![
                ("PICKET_LED_BACKEND", "gpio"),
                ("PICKET_LED_LINE", "GPIO17"),
            ],
            "led.line",
        ),
    ];
    for (text, env, key) in table {
        let mut all = vec![("PICKET_DEVICE_ID", "pi-test")];
        all.extend_from_slice(&env);
        let err = parse(&text, Path::new("t"), vars(&all))
            .and_then(|(raw, _)| validate(raw))
            .expect_err(&text);
        assert!(err.to_string().contains(key), "{text:?} {env:?}: got {err}");
    }
}

#[test]
fn commands_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let key = picket_protocol::signing::private_key([4; 32]);
    let pub_file = dir.path().join("command.pub");
    std::fs::write(
        &pub_file,
        picket_protocol::signing::public_key_text(&key.verifying_key()),
    )
    .unwrap();
    let c = parse_ok(
        "",
        &[
            ("PICKET_COMMANDS_ALLOWED", "ping, service.restart"),
            (
                "PICKET_COMMANDS_PUBLIC_KEY_FILE",
                pub_file.to_str().unwrap(),
            ),
            ("PICKET_COMMANDS_SERVICES", "kiosk.service"),
            ("PICKET_COMMANDS_REBOOT", "/sbin/shutdown,-r,now"),
            ("PICKET_COMMANDS_FILE_DIRS", "/srv/videos"),
        ],
    )
    .unwrap();
    let cmd = &c.commands;
    assert_eq!(cmd.allowed, ["ping", "service.restart"]);
    assert_eq!(cmd.public_key, Some(key.verifying_key()));
    assert_eq!(cmd.services, ["kiosk.service"]);
    assert_eq!(cmd.reboot, ["/sbin/shutdown", "-r", "now"]);
    assert_eq!(cmd.file_dirs, [Path::new("/srv/videos")]);
    let d = parse_ok("", &[]).unwrap().commands;
    assert_eq!(d.allowed, ["ping", "system.info"]);
    assert_eq!(d.public_key, None);
    assert_eq!(d.reboot, ["systemctl", "reboot"]);
}

// --- [update]: agent.update ---------------------------------------------

#[test]
fn update_section_defaults_environment_and_errors() {
    let d = parse_ok("", &[]).unwrap().update;
    assert_eq!(d.dir, Path::new("/var/lib/picket/update"));
    assert_eq!(d.keep, 3);
    assert_eq!(d.trial_window, std::time::Duration::from_secs(120));
    assert_eq!(d.max_bytes, 64 << 20);
    let u = parse_ok(
        "[update]\nkeep = 5\n",
        &[
            ("PICKET_UPDATE_DIR", "/data/update"),
            ("PICKET_UPDATE_TRIAL_WINDOW", "30s"),
            ("PICKET_UPDATE_MAX_BYTES", "16MiB"),
        ],
    )
    .unwrap()
    .update;
    assert_eq!(
        (
            u.dir.as_path(),
            u.keep,
            u.trial_window.as_secs(),
            u.max_bytes
        ),
        (Path::new("/data/update"), 5, 30, 16 << 20)
    );
    let table: &[Case] = &[
        ("[update]\ndir = \"rel\"\n", &[], "update.dir"),
        ("[update]\ndir = \"/var/../etc\"\n", &[], "update.dir"),
        ("[update]\nkeep = 0\n", &[], "update.keep"),
        (
            "[update]\ntrial_window = \"1s\"\n",
            &[],
            "update.trial_window",
        ),
        (
            "[update]\ntrial_window = \"2h\"\n",
            &[],
            "update.trial_window",
        ),
        ("[update]\nmax_bytes = \"1KiB\"\n", &[], "update.max_bytes"),
        (
            "",
            &[("PICKET_COMMANDS_ALLOWED", "ping,agent.update")],
            "commands.allowed",
        ),
    ];
    for (text, env, key) in table {
        let err = parse_ok(text, env).expect_err(text);
        assert_eq!(err.key(), Some(*key), "{text:?} {env:?}: got {err}");
    }
    let err = parse_ok("", &[("PICKET_COMMANDS_ALLOWED", "agent.update")]).unwrap_err();
    assert!(err.to_string().contains("public_key_file"), "{err}");
}

#[test]
fn the_launchers_settings_survive_an_invalid_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "[update]\ndir = \"/srv/update\"\n[sampling]\ninterval = \"fast\"\n[future]\nx = 1\n",
    )
    .unwrap();
    assert!(load(Some(&file), vars(&[("PICKET_DEVICE_ID", "d")])).is_err());
    let dir_of = |env: &[(&str, &str)]| lenient_string(Some(&file), vars(env), "update", "dir");
    assert_eq!(dir_of(&[]).as_deref(), Some("/srv/update"));
    assert_eq!(
        dir_of(&[("PICKET_UPDATE_DIR", "/env/update")]).as_deref(),
        Some("/env/update"),
        "the environment wins, as always"
    );
    std::fs::write(&file, "[update\n").unwrap();
    assert_eq!(dir_of(&[]), None);
    assert_eq!(
        lenient_string(
            Some(&dir.path().join("missing")),
            vars(&[]),
            "update",
            "dir"
        ),
        None
    );
}

#[test]
fn docker_section() {
    let d = parse_ok("", &[]).unwrap().docker;
    assert!(!d.enabled);
    assert_eq!(d.socket, Path::new("/var/run/docker.sock"));
    assert_eq!(
        d.scope.label.as_ref().unwrap().to_string(),
        "picket.manage=true"
    );
    assert!(d.scope.names.is_empty());
    assert_eq!(d.stats_interval, None);
    let text = r#"
[docker]
names = ["kiosk-*", "db"]
stats_interval = "30s"

[[docker.exec]]
name = "reload-nginx"
command = ["nginx", "-s", "reload"]
containers = ["web-*"]

[[docker.exec]]
name = "whoami"
command = ["id"]
user = "nobody"
"#;
    let d = parse_ok(
        text,
        &[
            ("PICKET_DOCKER_ENABLED", "true"),
            ("PICKET_DOCKER_SOCKET", "/run/user/1000/docker.sock"),
            ("PICKET_DOCKER_LABEL", ""),
        ],
    )
    .unwrap()
    .docker;
    assert_eq!(d.enabled, DOCKER_SUPPORTED);
    assert_eq!(d.socket, Path::new("/run/user/1000/docker.sock"));
    assert_eq!(d.scope.label, None);
    assert!(d.scope.contains("kiosk-2", &Default::default()));
    assert!(!d.scope.contains("web", &Default::default()));
    assert_eq!(d.stats_interval, Some(std::time::Duration::from_secs(30)));
    assert_eq!(d.exec.len(), 2);
    assert_eq!(d.exec[0].argv, ["nginx", "-s", "reload"]);
    assert!(d.exec[0].allows("web-1") && !d.exec[0].allows("db"));
    assert!(d.exec[1].allows("db"));
    assert_eq!(d.exec[1].user.as_deref(), Some("nobody"));
    let names = parse_ok("", &[("PICKET_DOCKER_NAMES", "a-*, b")]).unwrap();
    assert_eq!(names.docker.scope.names.len(), 2);
}

#[test]
fn the_first_boot_path_is_found_even_when_the_file_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    let path = |text: &str, env: &[(&str, &str)]| {
        std::fs::write(&file, text).unwrap();
        first_boot_path(Some(&file), vars(env))
    };
    let default = Some(std::path::PathBuf::from("/boot/firmware/picket.toml"));
    assert_eq!(path("", &[]).unwrap(), default);
    assert_eq!(
        path("[first_boot]\npath = \"/boot/picket.toml\"\n", &[]).unwrap(),
        Some("/boot/picket.toml".into())
    );
    // The file does not parse: the environment, else the default.
    assert_eq!(path("[broker\n", &[]).unwrap(), default);
    assert_eq!(
        path("[broker\n", &[("PICKET_FIRST_BOOT_PATH", "/media/p.toml")]).unwrap(),
        Some("/media/p.toml".into())
    );
    // Another section being invalid does not matter here.
    assert_eq!(
        path("[sampling]\ninterval = \"fast\"\n", &[]).unwrap(),
        default
    );
    assert_eq!(path("", &[("PICKET_FIRST_BOOT_PATH", "")]).unwrap(), None);
    let err = path("[first_boot]\npath = \"picket.toml\"\n", &[]).unwrap_err();
    assert_eq!(err.key(), Some("first_boot.path"));
}
