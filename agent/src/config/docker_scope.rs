//! Which containers picket may see and manage: by name pattern and/or by a
//! label. Anything else is invisible to samples and refused by commands.

use std::collections::HashMap;

use picket_config::{Glob, GlobError};

/// Why a `docker.label` is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("{0:?}: write key=value or key")]
    NoKey(String),
    #[error("{0:?} contains whitespace")]
    Whitespace(String),
}

/// A label a container must carry: `key=value`, or `key` with any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: Option<String>,
}

impl Label {
    /// `key=value` or `key`; the key is non-empty, neither has whitespace.
    pub fn parse(s: &str) -> Result<Label, LabelError> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (s, None),
        };
        if key.is_empty() {
            return Err(LabelError::NoKey(s.to_string()));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(LabelError::Whitespace(s.to_string()));
        }
        Ok(Label {
            key: key.to_string(),
            value: value.map(str::to_string),
        })
    }

    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        match (labels.get(&self.key), &self.value) {
            (Some(v), Some(want)) => v == want,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

/// The containers in scope: those whose name matches one of `names`, and
/// those carrying `label` (either is enough).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    pub names: Vec<Glob>,
    pub label: Option<Label>,
}

impl Scope {
    /// Parse `docker.names` patterns: globs over container names, which
    /// can only ever match `[a-zA-Z0-9_.-]` (plus `*` and `?`).
    pub fn names(patterns: &[String]) -> Result<Vec<Glob>, GlobError> {
        patterns.iter().map(|p| Glob::check_container(p)).collect()
    }

    /// `name` without Docker's leading `/`.
    pub fn contains(&self, name: &str, labels: &HashMap<String, String>) -> bool {
        self.names.iter().any(|g| g.matches(name))
            || self.label.as_ref().is_some_and(|l| l.matches(labels))
    }

    /// Nothing can ever be in scope.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.label.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_parse() {
        assert_eq!(
            Label::parse("picket.manage=true"),
            Ok(Label {
                key: "picket.manage".into(),
                value: Some("true".into())
            })
        );
        assert_eq!(
            Label::parse("team"),
            Ok(Label {
                key: "team".into(),
                value: None
            })
        );
        assert_eq!(
            Label::parse("team="),
            Ok(Label {
                key: "team".into(),
                value: Some(String::new())
            })
        );
        for bad in ["", "=true", "a b=c", "a=b c", "a=\n"] {
            assert!(Label::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Label::parse("picket.manage=true").unwrap().to_string(),
            "picket.manage=true"
        );
    }

    #[test]
    fn scope_table() {
        let by_label = Scope {
            names: vec![],
            label: Some(Label::parse("picket.manage=true").unwrap()),
        };
        let by_key = Scope {
            names: vec![],
            label: Some(Label::parse("picket.manage").unwrap()),
        };
        let by_name = Scope {
            names: Scope::names(&["kiosk-*".into(), "db".into()]).unwrap(),
            label: None,
        };
        let both = Scope {
            names: by_name.names.clone(),
            label: by_label.label.clone(),
        };
        let none = Scope::default();
        let managed = labels(&[("picket.manage", "true")]);
        let unmanaged = labels(&[("picket.manage", "false")]);
        let bare = labels(&[]);
        let table: Vec<(&Scope, &str, &HashMap<String, String>, bool)> = vec![
            (&by_label, "web", &managed, true),
            (&by_label, "web", &unmanaged, false),
            (&by_label, "web", &bare, false),
            (&by_key, "web", &unmanaged, true),
            (&by_key, "web", &bare, false),
            (&by_name, "kiosk-1", &bare, true),
            (&by_name, "kiosk", &bare, false),
            (&by_name, "db", &bare, true),
            (&by_name, "db2", &bare, false),
            (&by_name, "web", &managed, false),
            (&both, "web", &managed, true),
            (&both, "kiosk-a", &unmanaged, true),
            (&both, "web", &unmanaged, false),
            (&none, "web", &managed, false),
        ];
        for (scope, name, labels, want) in table {
            assert_eq!(
                scope.contains(name, labels),
                want,
                "{scope:?} {name} {labels:?}"
            );
        }
        assert!(none.is_empty());
        assert!(!by_name.is_empty());
    }

    #[test]
    fn name_patterns() {
        assert!(Scope::names(&["web-?".into(), "*".into()]).is_ok());
        for bad in ["", "/web", "web app", "[ab]", "web/1"] {
            assert!(Scope::names(&[bad.into()]).is_err(), "{bad:?}");
        }
    }
}
