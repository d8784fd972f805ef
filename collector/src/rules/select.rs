//! What a rule looks at: a metric selector (`temp`, `disk.pct:*`) and the
//! `*`/`?` globs used for instances, device ids and label values.

use crate::model::{METRICS, Metric};

/// The metric fed by presence (birth, Last Will, heartbeat timeout) rather
/// than by samples: 1 while the device is offline, 0 while it is online.
pub const OFFLINE: &str = "offline";

/// A glob over a whole string: `*` matches any run of characters (`/`
/// included), `?` exactly one; everything else matches itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Glob(Vec<char>);

impl Glob {
    pub fn parse(s: &str) -> Result<Glob, String> {
        if s.is_empty() {
            return Err("an empty pattern matches nothing".into());
        }
        if s.chars().any(char::is_control) {
            return Err(format!("{s:?} contains a control character"));
        }
        // Refused rather than taken literally: someone who writes `[ab]`
        // expects a character class and would get a pattern that never
        // matches, silently.
        if let Some(c) = s.chars().find(|c| matches!(c, '[' | ']' | '{' | '}')) {
            return Err(format!(
                "{s:?} contains {c:?}: only * (any characters) and ? (one character) are supported"
            ));
        }
        Ok(Glob(s.chars().collect()))
    }

    pub fn matches(&self, text: &str) -> bool {
        // Rules match every sample's metrics against their globs: the
        // common cases (`*`, ASCII names) allocate nothing.
        if self.0.len() == 1 && self.0[0] == '*' {
            return true;
        }
        if text.is_ascii() && self.0.iter().all(char::is_ascii) {
            let text = text.as_bytes();
            return glob_match(&self.0, text.len(), |p, t| {
                p == '?' || p as u32 == u32::from(text[t])
            });
        }
        let text: Vec<char> = text.chars().collect();
        glob_match(&self.0, text.len(), |p, t| p == '?' || p == text[t])
    }

    /// Whether this glob could match a device id at all (ids are
    /// `[A-Za-z0-9_.-]`), so a typo in `devices` is caught at start-up.
    pub fn check_device(s: &str) -> Result<Glob, String> {
        let glob = Glob::parse(s)?;
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '?')))
        {
            return Err(format!(
                "{s:?} can never match a device id: {c:?} is not allowed in ids \
                 (letters, digits, '_', '.', '-', plus * and ? in patterns)"
            ));
        }
        Ok(glob)
    }
}

/// Whether `pat` matches a text of `len` characters, `eq(p, t)` telling
/// whether pattern character `p` matches the text's `t`-th character.
fn glob_match(pat: &[char], len: usize, eq: impl Fn(char, usize) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: the pattern index after it and
    // the text index it currently stands for. One `*` to backtrack to is
    // enough: a later `*` subsumes any retry of an earlier one.
    let mut star: Option<(usize, usize)> = None;
    while t < len {
        match pat.get(p) {
            Some('*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if eq(c, t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|&c| c == '*')
}

/// Which metric a rule looks at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selector {
    name: String,
    /// `None`: the metric without instance; `Some`: instances matching.
    instance: Option<Glob>,
}

impl Selector {
    pub(crate) fn parse(s: &str) -> Result<Selector, String> {
        let metric = Metric::parse(s)?;
        let name = metric.name();
        let entries: Vec<&str> = METRICS
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, _, doc)| *doc)
            .collect();
        let (bare, per_instance) = if name == OFFLINE {
            (true, false)
        } else if entries.is_empty() {
            let mut known: Vec<&str> = METRICS.iter().map(|(n, _, _)| *n).collect();
            known.dedup();
            known.push(OFFLINE);
            return Err(format!(
                "unknown metric {name:?}; known metrics: {}",
                known.join(", ")
            ));
        } else {
            (
                entries.iter().any(|d| !d.starts_with("per ")),
                entries.iter().any(|d| d.starts_with("per ")),
            )
        };
        let instance = match metric.instance() {
            None if !bare => {
                return Err(format!(
                    "{name} has one value per instance: write {name}:* for all of them \
                     or {name}:<instance> (globs * and ? allowed)"
                ));
            }
            Some(_) if !per_instance => {
                return Err(format!("{name} has no instances: write just {name}"));
            }
            None => None,
            Some(i) => Some(Glob::parse(i)?),
        };
        Ok(Selector {
            name: name.to_string(),
            instance,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn has_instances(&self) -> bool {
        self.instance.is_some()
    }

    pub(crate) fn is_presence(&self) -> bool {
        self.name == OFFLINE
    }

    /// The instance `metric` stands for under this selector (`""` for a
    /// metric without instance), or `None` when it is not selected.
    pub(crate) fn select<'m>(&self, metric: &'m Metric) -> Option<&'m str> {
        // `name` or `name:instance`, without splitting: this runs for every
        // rule and every point of every sample.
        let instance = match metric.as_str().strip_prefix(self.name.as_str())? {
            "" => "",
            rest => rest.strip_prefix(':')?,
        };
        self.select_instance(instance).then_some(instance)
    }

    /// Whether a stored instance key (`""` for none) is still selected.
    pub(crate) fn select_instance(&self, instance: &str) -> bool {
        match &self.instance {
            None => instance.is_empty(),
            Some(g) => !instance.is_empty() && g.matches(instance),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let table = [
            ("*", "/", true),
            ("*", "anything/at/all", true),
            ("/", "/", true),
            ("/", "/data", false),
            ("/data", "/data", true),
            ("kiosk*", "kiosk.service", true),
            ("kiosk*", "my-kiosk.service", false),
            ("*kiosk*", "my-kiosk.service", true),
            ("pi-??", "pi-01", true),
            ("pi-??", "pi-1", false),
            ("pi-??", "pi-001", false),
            ("*.service", "nginx.service", true),
            ("*.service", "nginx.socket", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("**", "", true),
            (
                "*a",
                "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                false,
            ),
            ("é?", "éa", true),
        ];
        for (pat, text, want) in table {
            let g = Glob::parse(pat).expect("valid glob");
            assert_eq!(g.matches(text), want, "{pat:?} vs {text:?}");
        }
    }

    #[test]
    fn bad_globs() {
        for bad in ["", "[ab]", "{a,b}", "a\nb"] {
            assert!(Glob::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Glob::check_device("pi-*").is_ok());
        assert!(Glob::check_device("pi kitchen").is_err());
        assert!(Glob::check_device("pi/1").is_err());
    }

    #[test]
    fn selectors() {
        // (selector, Some((metric name, per instance)) or None when refused)
        let table = [
            ("temp", Some(("temp", false))),
            ("temp:cpu-*", Some(("temp", true))),
            ("mem.pct", Some(("mem.pct", false))),
            ("disk.pct:*", Some(("disk.pct", true))),
            ("service:kiosk*", Some(("service", true))),
            ("offline", Some(("offline", false))),
            ("disk.pct", None),
            ("mem.pct:x", None),
            ("offline:x", None),
            ("tmp", None),
            ("disk.pct:[ab]", None),
        ];
        for (s, want) in table {
            let got = Selector::parse(s).ok();
            let got = got.as_ref().map(|sel| (sel.name(), sel.has_instances()));
            assert_eq!(got, want, "{s:?}");
        }
    }

    #[test]
    fn selects_instances() {
        let disks = Selector::parse("disk.pct:/d*").expect("valid");
        let bare = Selector::parse("temp").expect("valid");
        let table = [
            (&disks, "disk.pct:/data", Some("/data")),
            (&disks, "disk.pct:/", None),
            (&disks, "disk.free:/data", None),
            (&bare, "temp", Some("")),
            (&bare, "temp:cpu-thermal", None),
        ];
        for (sel, metric, want) in table {
            let m = Metric::parse(metric).expect("valid metric");
            assert_eq!(sel.select(&m), want, "{metric}");
        }
    }
}
