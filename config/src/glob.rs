//! Whole-string globs with `*` (any run of characters) and `?` (one
//! character): device ids and label values in the collector's rules,
//! container names in the agent's Docker scope.

/// A glob over a whole string: `*` matches any run of characters (`/`
/// included), `?` exactly one; everything else matches itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Glob(Vec<char>);

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GlobError {
    #[error("an empty pattern matches nothing")]
    Empty,
    #[error("{0:?} contains a control character")]
    Control(String),
    #[error(
        "{pattern:?} contains {found:?}: only * (any characters) and ? (one character) are supported"
    )]
    Unsupported { pattern: String, found: char },
    #[error(
        "{pattern:?} can never match a device id: {found:?} is not allowed in ids \
         (letters, digits, '_', '.', '-', plus * and ? in patterns)"
    )]
    NotDeviceId { pattern: String, found: char },
    #[error("{pattern:?} can never match a container name: {found:?} is not allowed in names")]
    NotContainerName { pattern: String, found: char },
}

impl Glob {
    pub fn parse(s: &str) -> Result<Glob, GlobError> {
        if s.is_empty() {
            return Err(GlobError::Empty);
        }
        if s.chars().any(char::is_control) {
            return Err(GlobError::Control(s.into()));
        }
        // Refused rather than taken literally: someone who writes `[ab]`
        // expects a character class and would get a pattern that never
        // matches, silently.
        if let Some(found) = s.chars().find(|c| matches!(c, '[' | ']' | '{' | '}')) {
            return Err(GlobError::Unsupported {
                pattern: s.into(),
                found,
            });
        }
        Ok(Glob(s.chars().collect()))
    }

    pub fn matches(&self, text: &str) -> bool {
        // The collector's rules match every sample's metrics against their
        // globs: the common cases (`*`, ASCII names) allocate nothing.
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
    pub fn check_device(s: &str) -> Result<Glob, GlobError> {
        let glob = Glob::parse(s)?;
        if let Some(found) = outside_names(s) {
            return Err(GlobError::NotDeviceId {
                pattern: s.into(),
                found,
            });
        }
        Ok(glob)
    }

    /// The same for a container name (Docker allows `[a-zA-Z0-9_.-]`).
    pub fn check_container(s: &str) -> Result<Glob, GlobError> {
        if let Some(found) = outside_names(s) {
            return Err(GlobError::NotContainerName {
                pattern: s.into(),
                found,
            });
        }
        Glob::parse(s)
    }
}

/// The first character of a pattern that no device id or container name
/// can hold: they are `[A-Za-z0-9_.-]`, patterns add `*` and `?`.
fn outside_names(s: &str) -> Option<char> {
    s.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '?')))
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
}
