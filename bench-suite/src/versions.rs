//! The versions of the crates this program was built with, read from the workspace's lock
//! file at compile time, so that the report names the very versions it measured.

/// The workspace's lock file, as this program was built from it.
const LOCK: &str = include_str!("../../Cargo.lock");

/// `name version` of the crate `name` this program was built with (the first, if the lock
/// file holds several), such as `rayon 1.12.0`; `None` if it is not in the lock file.
pub(crate) fn of(name: &str) -> Option<String> {
    let mut lines = LOCK.lines();
    while let Some(line) = lines.next() {
        if line.strip_prefix("name = ").is_some_and(|n| n.trim_matches('"') == name) {
            let version = lines.next()?.strip_prefix("version = ")?.trim_matches('"');
            return Some(format!("{name} {version}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_peers_versions_are_found() {
        for name in ["rayon", "rayon-core", "crossbeam-channel", "procspawn"] {
            let found = super::of(name).unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
            let version = found.strip_prefix(&format!("{name} ")).unwrap();
            assert!(version.split('.').all(|p| !p.is_empty()), "{found}");
        }
        assert_eq!(super::of("no-such-crate"), None);
    }
}
