//! What the agent knows about the containers in scope, and which changes
//! are worth an event. Pure: the watcher feeds it what the engine said
//! (inspections, and the intent its events reveal) and publishes what
//! comes out.
//!
//! "Exited unexpectedly" needs the engine's events: a container's state
//! only says it exited, not whether someone asked. The engine logs a
//! `kill` (with the signal) for `docker stop` and `docker kill` before the
//! process dies, under the container's lock, so the `die` that follows
//! always comes after it; a process that exits or crashes by itself, or
//! that the kernel's OOM killer ends, has no such request. A container
//! the agent did not see stop (it was already down when the agent
//! started, or the engine was away) is reported without a verdict, except
//! when the engine says the OOM killer ended it.

use std::collections::BTreeMap;

use picket_protocol::{Container, ContainerState, EventKind, Health};

/// One container as the engine describes it at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The full id.
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub image: String,
    pub state: ContainerState,
    pub health: Option<Health>,
    pub restarts: u64,
    pub started: Option<u64>,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
}

/// What an engine event says about intent, ahead of the state it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Someone asked the engine to stop it (`docker stop`, `docker kill`).
    StopRequested,
    /// It was started (again): earlier intent no longer applies.
    Started,
    /// The kernel's OOM killer struck inside it.
    Oom,
}

/// The intent behind an engine event: its `action` and, for `kill`, the
/// `signal` attribute (a number, or a name on older engines). Signals
/// that do not end a process (`docker kill -s HUP` to reload) say nothing.
pub fn intent(action: &str, signal: Option<&str>) -> Option<Intent> {
    match action {
        "stop" => Some(Intent::StopRequested),
        "kill" => {
            let signal = signal.unwrap_or("9");
            let sig = signal.trim_start_matches("SIG");
            let ends = matches!(
                sig,
                "9" | "KILL" | "15" | "TERM" | "2" | "INT" | "3" | "QUIT"
            );
            ends.then_some(Intent::StopRequested)
        }
        "start" | "restart" => Some(Intent::Started),
        "oom" => Some(Intent::Oom),
        _ => None,
    }
}

/// The engine event actions worth a fresh look at the container: state,
/// health, name or labels may have changed. (Exec and attach events, a
/// health check's every run among them, are not.)
pub fn worth_inspecting(action: &str) -> bool {
    matches!(
        action,
        "create"
            | "start"
            | "restart"
            | "die"
            | "kill"
            | "oom"
            | "stop"
            | "pause"
            | "unpause"
            | "rename"
            | "update"
            | "destroy"
    ) || action.starts_with("health_status")
}

#[derive(Debug, Clone)]
struct Entry {
    container: Container,
    stop_requested: bool,
    oom: bool,
}

/// The containers in scope by full id.
#[derive(Debug, Default)]
pub struct Tracker {
    entries: BTreeMap<String, Entry>,
    /// Changes are reported only once a first full listing set the scene:
    /// every container appearing "new" at start-up is not news.
    synced: bool,
}

impl Tracker {
    pub fn intent(&mut self, id: &str, intent: Intent) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        match intent {
            Intent::StopRequested => e.stop_requested = true,
            Intent::Oom => e.oom = true,
            Intent::Started => {
                e.stop_requested = false;
                e.oom = false;
            }
        }
    }

    /// A fresh inspection of one container in scope; the event to send
    /// when its state, health or restart count changed.
    pub fn observe(&mut self, snap: Snapshot) -> Option<EventKind> {
        let synced = self.synced;
        let Some(e) = self.entries.get_mut(&snap.id) else {
            let unexpected = (snap.state.is_down() && snap.oom_killed).then_some(true);
            let container = container(&snap, unexpected);
            let event = synced.then(|| event(&container, None));
            self.entries.insert(
                snap.id,
                Entry {
                    container,
                    stop_requested: false,
                    oom: false,
                },
            );
            return event;
        };
        let old = e.container.clone();
        let was_up = !old.state.is_down();
        let unexpected = if !snap.state.is_down() {
            if old.state.is_down() {
                // Started again without the event reaching us.
                e.stop_requested = false;
                e.oom = false;
            }
            None
        } else if snap.oom_killed || e.oom {
            Some(true)
        } else if was_up {
            Some(!e.stop_requested)
        } else {
            old.unexpected
        };
        let mut new = container(&snap, unexpected);
        new.cpu = old.cpu;
        new.mem = old.mem;
        new.mem_limit = old.mem_limit;
        if new.state != ContainerState::Running {
            (new.cpu, new.mem) = (None, None);
        }
        let changed = new.state != old.state
            || new.health != old.health
            || new.restarts != old.restarts
            || new.unexpected != old.unexpected;
        e.container = new;
        (changed && synced).then(|| event(&e.container, Some(&old)))
    }

    /// A full listing of the containers in scope: catches anything the
    /// event stream missed, and forgets containers no longer there.
    pub fn resync(&mut self, snaps: Vec<Snapshot>) -> Vec<EventKind> {
        let mut events = Vec::new();
        let present: std::collections::BTreeSet<String> =
            snaps.iter().map(|s| s.id.clone()).collect();
        for snap in snaps {
            events.extend(self.observe(snap));
        }
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            events.extend(self.remove(&id));
        }
        self.synced = true;
        events
    }

    /// The container was removed, or left the scope.
    pub fn remove(&mut self, id: &str) -> Option<EventKind> {
        let e = self.entries.remove(id)?;
        self.synced.then_some(EventKind::ContainerGone {
            name: e.container.name,
        })
    }

    /// The engine went away: what it said no longer holds, and the next
    /// listing sets the scene again.
    pub fn reset(&mut self) {
        self.entries.clear();
        self.synced = false;
    }

    /// Latest resource figures of a container.
    pub fn set_usage(&mut self, id: &str, cpu: Option<f32>, mem: Option<u64>, limit: Option<u64>) {
        if let Some(e) = self.entries.get_mut(id) {
            e.container.cpu = cpu;
            e.container.mem = mem;
            e.container.mem_limit = limit;
        }
    }

    /// Full ids of the running containers (stats are read for these).
    pub fn running(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.container.state == ContainerState::Running)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The containers for a sample, by name.
    pub fn containers(&self) -> Vec<Container> {
        let mut out: Vec<Container> = self.entries.values().map(|e| e.container.clone()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// A container of `view` that `reference` names: its name, or its id
/// given with at least 12 digits. The view keeps short ids only, so this is
/// the check made before a command is accepted; the one made when it
/// runs looks at the container the engine resolved the reference to.
pub fn find<'a>(view: &'a [Container], reference: &str) -> Option<&'a Container> {
    view.iter().find(|c| c.name == reference).or_else(|| {
        (reference.len() >= 12)
            .then(|| {
                view.iter()
                    .find(|c| c.id.starts_with(reference) || reference.starts_with(&c.id))
            })
            .flatten()
    })
}

fn container(s: &Snapshot, unexpected: Option<bool>) -> Container {
    let down = s.state.is_down();
    Container {
        name: s.name.clone(),
        id: s.id.chars().take(12).collect(),
        image: s.image.clone(),
        state: s.state,
        health: s.health,
        restarts: s.restarts,
        started: s.started,
        exit_code: if down { s.exit_code } else { None },
        unexpected,
        cpu: None,
        mem: None,
        mem_limit: None,
    }
}

fn event(c: &Container, old: Option<&Container>) -> EventKind {
    EventKind::Container {
        name: c.name.clone(),
        state: c.state,
        health: c.health,
        restarts: c.restarts,
        exit_code: c.exit_code,
        unexpected: c.unexpected,
        old_state: old.map(|o| o.state),
        old_health: old.and_then(|o| o.health),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerState::*;

    fn snap(state: ContainerState) -> Snapshot {
        Snapshot {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            image: "nginx:1.27".into(),
            state,
            health: None,
            restarts: 0,
            started: Some(1_000),
            exit_code: Some(if state == Running { 0 } else { 137 }),
            oom_killed: false,
        }
    }

    fn synced(initial: Vec<Snapshot>) -> Tracker {
        let mut t = Tracker::default();
        assert!(t.resync(initial).is_empty(), "the first listing is silent");
        t
    }

    fn state_of(e: &EventKind) -> (ContainerState, Option<bool>, Option<ContainerState>) {
        match e {
            EventKind::Container {
                state,
                unexpected,
                old_state,
                ..
            } => (*state, *unexpected, *old_state),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn intents_from_engine_events() {
        let table = [
            ("kill", Some("9"), Some(Intent::StopRequested)),
            ("kill", Some("15"), Some(Intent::StopRequested)),
            ("kill", Some("SIGTERM"), Some(Intent::StopRequested)),
            ("kill", Some("KILL"), Some(Intent::StopRequested)),
            ("kill", Some("1"), None),
            ("kill", Some("SIGHUP"), None),
            ("kill", None, Some(Intent::StopRequested)),
            ("stop", None, Some(Intent::StopRequested)),
            ("start", None, Some(Intent::Started)),
            ("restart", None, Some(Intent::Started)),
            ("oom", None, Some(Intent::Oom)),
            ("die", Some("9"), None),
            ("health_status: unhealthy", None, None),
        ];
        for (action, signal, want) in table {
            assert_eq!(intent(action, signal), want, "{action} {signal:?}");
        }
        for a in ["die", "health_status: healthy", "destroy", "rename", "oom"] {
            assert!(worth_inspecting(a), "{a}");
        }
        for a in [
            "exec_create: sh -c true",
            "exec_start: sh",
            "exec_die",
            "attach",
            "top",
        ] {
            assert!(!worth_inspecting(a), "{a}");
        }
    }

    #[test]
    fn exit_without_request_is_unexpected() {
        let mut t = synced(vec![snap(Running)]);
        t.intent("0123456789abcdef", Intent::Oom);
        t.intent("0123456789abcdef", Intent::Started);
        let e = t.observe(snap(Exited)).expect("an event");
        assert_eq!(state_of(&e), (Exited, Some(true), Some(Running)));
        let c = &t.containers()[0];
        assert_eq!(
            (c.state, c.unexpected, c.exit_code),
            (Exited, Some(true), Some(137))
        );
        // Seen again unchanged: no new event, the verdict stays.
        assert_eq!(t.observe(snap(Exited)), None);
        assert_eq!(t.containers()[0].unexpected, Some(true));
    }

    #[test]
    fn stop_through_the_engine_is_expected() {
        let mut t = synced(vec![snap(Running)]);
        t.intent("0123456789abcdef", Intent::StopRequested);
        let e = t.observe(snap(Exited)).expect("an event");
        assert_eq!(state_of(&e), (Exited, Some(false), Some(Running)));
        // Started again, then crashing: the old request no longer counts.
        t.intent("0123456789abcdef", Intent::Started);
        assert!(t.observe(snap(Running)).is_some());
        assert_eq!(t.containers()[0].unexpected, None);
        let e = t.observe(snap(Exited)).expect("an event");
        assert_eq!(state_of(&e), (Exited, Some(true), Some(Running)));
    }

    #[test]
    fn a_restart_seen_only_as_running_again_clears_the_request() {
        let mut t = synced(vec![snap(Running)]);
        t.intent("0123456789abcdef", Intent::StopRequested);
        t.observe(snap(Exited));
        // The start event was missed; the next look finds it running.
        assert!(t.observe(snap(Running)).is_some());
        let e = t.observe(snap(Exited)).expect("an event");
        assert_eq!(state_of(&e), (Exited, Some(true), Some(Running)));
    }

    #[test]
    fn oom_is_unexpected_even_when_not_seen() {
        let mut oom = snap(Exited);
        oom.oom_killed = true;
        let t = synced(vec![oom.clone(), {
            let mut s = snap(Exited);
            s.id = "fedcba9876543210".into();
            s.name = "db".into();
            s
        }]);
        let v = t.containers();
        assert_eq!(v[0].name, "db");
        assert_eq!(
            v[0].unexpected, None,
            "stopped before we looked: no verdict"
        );
        assert_eq!(v[1].unexpected, Some(true));
        // An OOM event before the exit makes the exit unexpected even if
        // the engine also logged a kill.
        let mut t = synced(vec![snap(Running)]);
        t.intent("0123456789abcdef", Intent::StopRequested);
        t.intent("0123456789abcdef", Intent::Oom);
        assert_eq!(state_of(&t.observe(snap(Exited)).unwrap()).1, Some(true));
    }

    #[test]
    fn health_and_restarts_are_news() {
        let mut t = synced(vec![snap(Running)]);
        let mut s = snap(Running);
        s.health = Some(Health::Starting);
        assert!(t.observe(s.clone()).is_some());
        s.health = Some(Health::Unhealthy);
        match t.observe(s.clone()).unwrap() {
            EventKind::Container {
                health, old_health, ..
            } => assert_eq!(
                (health, old_health),
                (Some(Health::Unhealthy), Some(Health::Starting))
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.observe(s.clone()), None);
        s.restarts = 1;
        assert!(t.observe(s).is_some());
    }

    #[test]
    fn new_and_gone_after_the_first_listing() {
        let mut t = Tracker::default();
        // Before the first listing: silent.
        assert_eq!(t.observe(snap(Running)), None);
        assert!(t.resync(vec![snap(Running)]).is_empty());
        let mut other = snap(Created);
        other.id = "fedcba9876543210".into();
        other.name = "db".into();
        let e = t.observe(other.clone()).expect("news");
        assert_eq!(state_of(&e), (Created, None, None));
        let events = t.resync(vec![other]);
        assert_eq!(
            events,
            vec![EventKind::ContainerGone { name: "web".into() }]
        );
        assert_eq!(
            t.remove("fedcba9876543210"),
            Some(EventKind::ContainerGone { name: "db".into() })
        );
        assert_eq!(t.remove("fedcba9876543210"), None);
        t.reset();
        assert!(
            t.resync(vec![snap(Running)]).is_empty(),
            "silent again after a reset"
        );
    }

    #[test]
    fn usage_is_kept_while_running() {
        let mut t = synced(vec![snap(Running)]);
        t.set_usage("0123456789abcdef", Some(12.5), Some(1000), Some(2000));
        t.observe(snap(Running));
        let c = &t.containers()[0];
        assert_eq!(
            (c.cpu, c.mem, c.mem_limit),
            (Some(12.5), Some(1000), Some(2000))
        );
        assert_eq!(t.running(), vec!["0123456789abcdef".to_string()]);
        t.observe(snap(Exited));
        let c = &t.containers()[0];
        assert_eq!((c.cpu, c.mem), (None, None));
        assert!(t.running().is_empty());
    }

    #[test]
    fn references() {
        let t = synced(vec![snap(Running)]);
        let view = t.containers();
        assert_eq!(view[0].id, "0123456789ab");
        assert!(find(&view, "web").is_some());
        assert!(find(&view, "0123456789ab").is_some());
        assert!(find(&view, "0123456789abcdef").is_some());
        assert!(find(&view, "0123456789aX").is_none());
        assert!(
            find(&view, "0123").is_none(),
            "short prefixes are ambiguous"
        );
        assert!(find(&view, "we").is_none());
        assert!(find(&view, "db").is_none());
    }
}
