//! Strategies for every message type. Floats are finite (JSON cannot carry
//! NaN or infinities) and device ids valid, so anything generated is a
//! message an agent or collector could really send.

use picket_protocol::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

pub fn device_id() -> impl Strategy<Value = DeviceId> {
    "[A-Za-z0-9_.-]{1,64}".prop_map(|s| DeviceId::new(s).expect("valid by construction"))
}

/// A command id: one plain topic level, like a device id.
pub fn command_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,64}"
}

/// Any text, control characters and non-ASCII included.
pub fn text() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

pub fn f32_finite() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("finite", |f| f.is_finite())
}

pub fn f64_finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

fn version() -> impl Strategy<Value = u16> {
    0..=VERSION
}

pub fn state() -> impl Strategy<Value = State> {
    (
        version(),
        device_id(),
        prop_oneof![Just(Presence::Online), Just(Presence::Offline)],
        "[0-9a-f]{16}",
        of(text()),
        of(text()),
        of(text()),
        of(any::<u64>()),
        of(prop_oneof![
            Just(OfflineReason::CleanStop),
            Just(OfflineReason::ConnectionLost)
        ]),
    )
        .prop_map(
            |(v, device, status, session, version, model, boot, ts, reason)| State {
                v,
                device,
                status,
                session,
                version,
                model,
                boot,
                ts,
                reason,
            },
        )
}

fn load() -> impl Strategy<Value = Load> {
    (f32_finite(), f32_finite(), f32_finite()).prop_map(|(m1, m5, m15)| Load { m1, m5, m15 })
}

fn memory() -> impl Strategy<Value = Memory> {
    (any::<u64>(), any::<u64>(), any::<u64>(), f32_finite()).prop_map(
        |(total, used, avail, pct)| Memory {
            total,
            used,
            avail,
            pct,
        },
    )
}

fn disk() -> impl Strategy<Value = Disk> {
    (
        text(),
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        f32_finite(),
    )
        .prop_map(|(mount, fs, total, used, free, pct)| Disk {
            mount,
            fs,
            total,
            used,
            free,
            pct,
        })
}

fn net_if() -> impl Strategy<Value = NetIf> {
    (text(), any::<[u64; 8]>()).prop_map(|(name, c)| NetIf {
        name,
        rx_bytes: c[0],
        tx_bytes: c[1],
        rx_packets: c[2],
        tx_packets: c[3],
        rx_errors: c[4],
        tx_errors: c[5],
        rx_dropped: c[6],
        tx_dropped: c[7],
    })
}

fn thermal() -> impl Strategy<Value = Thermal> {
    (text(), text(), f32_finite()).prop_map(|(zone, kind, c)| Thermal { zone, kind, c })
}

pub fn throttle() -> impl Strategy<Value = Throttle> {
    prop_oneof![
        any::<u32>().prop_map(Throttle::from_firmware),
        (of(any::<u32>()), any::<[bool; 8]>()).prop_map(|(raw, b)| Throttle {
            src: ThrottleSource::Hwmon,
            raw,
            uv: b[0],
            capped: b[1],
            throttled: b[2],
            soft_temp: b[3],
            uv_boot: b[4],
            capped_boot: b[5],
            throttled_boot: b[6],
            soft_temp_boot: b[7],
        }),
    ]
}

pub fn active_state() -> impl Strategy<Value = ActiveState> {
    prop_oneof![
        Just(ActiveState::Active),
        Just(ActiveState::Reloading),
        Just(ActiveState::Inactive),
        Just(ActiveState::Failed),
        Just(ActiveState::Activating),
        Just(ActiveState::Deactivating),
        Just(ActiveState::Maintenance),
        Just(ActiveState::Refreshing),
        Just(ActiveState::Unknown),
    ]
}

fn service() -> impl Strategy<Value = Service> {
    (text(), active_state(), text()).prop_map(|(unit, active, sub)| Service { unit, active, sub })
}

fn agent_health() -> impl Strategy<Value = AgentHealth> {
    (
        text(),
        "[0-9a-f]{16}",
        any::<u64>(),
        any::<u64>(),
        of(any::<u64>()),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                version,
                config,
                queue_records,
                queue_bytes,
                oldest_unsent_ms,
                dropped,
                quarantined,
            )| {
                AgentHealth {
                    version,
                    config,
                    queue_records,
                    queue_bytes,
                    oldest_unsent_ms,
                    dropped,
                    quarantined,
                }
            },
        )
}

pub fn sample() -> impl Strategy<Value = Sample> {
    let stamp = (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        text(),
        any::<bool>(),
        any::<bool>(),
    );
    let system = (
        of(f32_finite()),
        of(load()),
        of(memory()),
        of(memory()),
        of(any::<u64>()),
    );
    let groups = (
        vec(disk(), 0..3),
        vec(net_if(), 0..3),
        vec(thermal(), 0..3),
        of(throttle()),
        vec(service(), 0..3),
        of(agent_health()),
        vec(gpio_level(), 0..3),
        (of(engine()), vec(container(), 0..3)),
    );
    (stamp, system, groups).prop_map(
        |(
            (seq, ts, mono, boot, sync, hist),
            (cpu, load, mem, swap, uptime),
            (disks, net, thermal, throttle, services, agent, gpio, (docker, containers)),
        )| Sample {
            seq,
            ts,
            mono,
            boot,
            sync,
            hist,
            cpu,
            load,
            mem,
            swap,
            uptime,
            disks,
            net,
            thermal,
            throttle,
            services,
            gpio,
            docker,
            containers,
            agent,
        },
    )
}

fn container_state() -> impl Strategy<Value = ContainerState> {
    prop_oneof![
        Just(ContainerState::Created),
        Just(ContainerState::Running),
        Just(ContainerState::Paused),
        Just(ContainerState::Restarting),
        Just(ContainerState::Removing),
        Just(ContainerState::Exited),
        Just(ContainerState::Dead),
        Just(ContainerState::Unknown),
    ]
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        Just(Health::Starting),
        Just(Health::Healthy),
        Just(Health::Unhealthy),
    ]
}

fn engine() -> impl Strategy<Value = Engine> {
    prop_oneof![Just(Engine::Available), Just(Engine::Unavailable)]
}

pub fn container() -> impl Strategy<Value = Container> {
    (
        (text(), text(), text(), container_state(), of(health())),
        (
            any::<u64>(),
            of(any::<u64>()),
            of(any::<i64>()),
            of(any::<bool>()),
        ),
        (of(f32_finite()), of(any::<u64>()), of(any::<u64>())),
    )
        .prop_map(
            |(
                (name, id, image, state, health),
                (restarts, started, exit_code, unexpected),
                (cpu, mem, mem_limit),
            )| Container {
                name,
                id,
                image,
                state,
                health,
                restarts,
                started,
                exit_code,
                unexpected,
                cpu,
                mem,
                mem_limit,
            },
        )
}

pub fn gpio_level() -> impl Strategy<Value = GpioLevel> {
    (text(), any::<bool>()).prop_map(|(name, level)| GpioLevel { name, level })
}

pub fn telemetry() -> impl Strategy<Value = Telemetry> {
    (version(), device_id(), vec(sample(), 0..4)).prop_map(|(v, device, samples)| Telemetry {
        v,
        device,
        samples,
    })
}

pub fn event_kind() -> impl Strategy<Value = EventKind> {
    prop_oneof![
        (text(), of(any::<(u64, u64)>())).prop_map(|(version, seq_skipped)| {
            EventKind::AgentStarted {
                version,
                seq_skipped,
            }
        }),
        Just(EventKind::AgentStopping),
        Just(EventKind::ClockSynced),
        (of(throttle()), throttle()).prop_map(|(old, new)| EventKind::Throttle { old, new }),
        (
            text(),
            active_state(),
            text(),
            of(active_state()),
            of(text())
        )
            .prop_map(
                |(unit, active, sub, old_active, old_sub)| EventKind::Service {
                    unit,
                    active,
                    sub,
                    old_active,
                    old_sub
                }
            ),
        (text(), any::<u64>())
            .prop_map(|(segment, bytes)| EventKind::QueueQuarantined { segment, bytes }),
        (any::<u64>(), any::<u64>()).prop_map(|(records, total_dropped)| {
            EventKind::QueueDropped {
                records,
                total_dropped,
            }
        }),
        (text(), any::<bool>(), any::<u64>()).prop_map(|(name, level, edge_ns)| EventKind::Gpio {
            name,
            level,
            edge_ns
        }),
        (
            (text(), container_state(), of(health()), any::<u64>()),
            (
                of(any::<i64>()),
                of(any::<bool>()),
                of(container_state()),
                of(health())
            ),
        )
            .prop_map(
                |(
                    (name, state, health, restarts),
                    (exit_code, unexpected, old_state, old_health),
                )| EventKind::Container {
                    name,
                    state,
                    health,
                    restarts,
                    exit_code,
                    unexpected,
                    old_state,
                    old_health,
                }
            ),
        text().prop_map(|name| EventKind::ContainerGone { name }),
        engine().prop_map(|engine| EventKind::Docker { engine }),
    ]
}

pub fn event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        text(),
        any::<bool>(),
        any::<bool>(),
        event_kind(),
    )
        .prop_map(|(seq, ts, mono, boot, sync, hist, kind)| Event {
            seq,
            ts,
            mono,
            boot,
            sync,
            hist,
            kind,
        })
}

pub fn event_batch() -> impl Strategy<Value = EventBatch> {
    (version(), device_id(), vec(event(), 0..5)).prop_map(|(v, device, events)| EventBatch {
        v,
        device,
        events,
    })
}

pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Ping(NoArgs {})),
        Just(Action::SystemInfo(NoArgs {})),
        any::<u32>().prop_map(|delay| Action::SystemReboot(RebootArgs { delay })),
        text().prop_map(|unit| Action::ServiceRestart(UnitArgs { unit })),
        (text(), any::<u32>())
            .prop_map(|(unit, lines)| Action::ServiceLogs(LogsArgs { unit, lines })),
        (text(), text(), text()).prop_map(|(url, sha256, dest)| Action::FileDeploy(DeployArgs {
            url,
            sha256,
            dest
        })),
        text().prop_map(|path| Action::FileDelete(PathArgs { path })),
        text().prop_map(|toml| Action::ConfigUpdate(ConfigArgs { toml })),
        of(any::<u32>()).prop_map(|secs| Action::LedIdentify(IdentifyArgs { secs })),
        (text(), any::<u8>())
            .prop_map(|(name, level)| Action::GpioWrite(GpioWriteArgs { name, level })),
        (text(), text(), text(), text(), any::<bool>()).prop_map(
            |(url, sha256, version, signature, allow_downgrade)| Action::AgentUpdate(UpdateArgs {
                url,
                sha256,
                version,
                signature,
                allow_downgrade
            })
        ),
        Just(Action::DockerList(NoArgs {})),
        text().prop_map(|container| Action::DockerInspect(ContainerArgs { container })),
        text().prop_map(|container| Action::DockerStart(ContainerArgs { container })),
        (text(), of(any::<u32>()))
            .prop_map(|(container, timeout)| Action::DockerStop(StopArgs { container, timeout })),
        (text(), of(any::<u32>())).prop_map(|(container, timeout)| Action::DockerRestart(
            StopArgs { container, timeout }
        )),
        (
            text(),
            any::<u32>(),
            of(any::<u64>()),
            any::<(bool, bool)>(),
            of(any::<u32>()),
            of(any::<u32>())
        )
            .prop_map(
                |(container, tail, since, (timestamps, follow), duration, max_bytes)| {
                    Action::DockerLogs(DockerLogsArgs {
                        container,
                        tail,
                        since,
                        timestamps,
                        follow,
                        duration,
                        max_bytes,
                    })
                }
            ),
        (text(), any::<bool>(), of(any::<u32>())).prop_map(|(container, stream, duration)| {
            Action::DockerStats(DockerStatsArgs {
                container,
                stream,
                duration,
            })
        }),
        (text(), text()).prop_map(|(container, command)| Action::DockerExec(DockerExecArgs {
            container,
            command
        })),
    ]
}

pub fn command() -> impl Strategy<Value = Command> {
    (
        version(),
        command_id(),
        device_id(),
        action(),
        any::<u64>(),
        any::<u64>(),
        of(vec(any::<u8>(), 0..80)),
    )
        .prop_map(|(v, id, device, action, issued, expires, sig)| Command {
            v,
            id,
            device,
            action,
            issued,
            expires,
            sig,
        })
}

pub fn reply() -> impl Strategy<Value = Reply> {
    (
        version(),
        command_id(),
        device_id(),
        prop_oneof![
            Just(ReplyState::Accepted),
            Just(ReplyState::Running),
            Just(ReplyState::Succeeded),
            Just(ReplyState::Failed),
            Just(ReplyState::Rejected),
        ],
        of(text()),
        of(text()),
        of(any::<u32>()),
        any::<u64>(),
    )
        .prop_map(|(v, id, device, state, reason, output, chunk, ts)| Reply {
            v,
            id,
            device,
            state,
            reason,
            output,
            chunk,
            ts,
        })
}

fn alert() -> impl Strategy<Value = Alert> {
    (
        text(),
        prop_oneof![
            Just(Severity::Info),
            Just(Severity::Warning),
            Just(Severity::Critical)
        ],
        any::<u64>(),
        of(f64_finite()),
        text(),
    )
        .prop_map(|(rule, severity, since, value, message)| Alert {
            rule,
            severity,
            since,
            value,
            message,
        })
}

pub fn alert_set() -> impl Strategy<Value = AlertSet> {
    (version(), device_id(), any::<u64>(), vec(alert(), 0..4)).prop_map(
        |(v, device, ts, alerts)| AlertSet {
            v,
            device,
            ts,
            alerts,
        },
    )
}
