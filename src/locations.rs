//! Where the rules are when nobody says: the one answer every command that
//! loads or edits rules gives (sensor, replay, rules check/test, serve,
//! demo, hunt).

use std::fmt;
use std::path::{Path, PathBuf};

/// The vendor copy of the shipped rules in the Debian package (read-only;
/// the package seeds the editable `/var/lib/citysoc/rules` from it).
pub const PACKAGED_RULES: &str = "/usr/share/citysoc/rules";

/// No rules folder: every place that was looked at, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesNotFound {
    /// The places looked at, in the order they were tried.
    pub looked: Vec<PathBuf>,
    /// The folder was named (`--rules` or the configuration), so only it
    /// was looked at.
    pub named: bool,
}

impl fmt::Display for RulesNotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let places: Vec<String> = self.looked.iter().map(|p| p.display().to_string()).collect();
        if self.named {
            write!(f, "the rules folder {} is not a folder (or cannot be read)", places.join(", "))
        } else {
            write!(f, "no rules folder found; looked in {} (name one with --rules)", places.join(", "))
        }
    }
}

impl std::error::Error for RulesNotFound {}

/// The places looked at when no folder is named, in order: the `rules`
/// folder of the source checkout this binary was built from (not for a
/// binary built for the package, `CITYSOC_PACKAGED` set at build time, so a
/// package never points at a build machine's tree), then the package's
/// vendor copy.
pub fn default_rules_places() -> Vec<PathBuf> {
    let mut v = Vec::with_capacity(2);
    if option_env!("CITYSOC_PACKAGED").is_none() {
        v.push(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/rules")));
    }
    v.push(PathBuf::from(PACKAGED_RULES));
    v
}

/// The rules folder: `flag` (`--rules DIR`) if given, else `config` (the
/// configuration file's value), else the first of
/// [`default_rules_places`] that is a folder. A named folder that is not
/// there is an error, never a silent fallback: a typo must not run another
/// rule set.
pub fn rules_location(flag: Option<&Path>, config: Option<&Path>) -> Result<PathBuf, RulesNotFound> {
    if let Some(named) = flag.or(config) {
        return if named.is_dir() {
            Ok(named.to_path_buf())
        } else {
            Err(RulesNotFound { looked: vec![named.to_path_buf()], named: true })
        };
    }
    let looked = default_rules_places();
    match looked.iter().find(|p| p.is_dir()) {
        Some(p) => Ok(p.clone()),
        None => Err(RulesNotFound { looked, named: false }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_config_and_a_named_folder_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        assert_eq!(rules_location(Some(&a), Some(&b)).unwrap(), a);
        assert_eq!(rules_location(None, Some(&b)).unwrap(), b);
        let missing = tmp.path().join("missing");
        let e = rules_location(Some(&missing), Some(&b)).unwrap_err();
        assert_eq!(e.looked, vec![missing.clone()]);
        assert!(e.to_string().contains(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn unnamed_it_is_the_checkout_of_a_development_build() {
        // This test binary is not built for the package.
        let places = default_rules_places();
        assert_eq!(places.first().unwrap(), &Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"));
        assert_eq!(places.last().unwrap(), Path::new(PACKAGED_RULES));
        assert_eq!(rules_location(None, None).unwrap(), places[0]);
    }
}
