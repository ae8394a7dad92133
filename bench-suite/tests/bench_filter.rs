//! `cargo bench -- FILTER` names as skipped only the cases the filter selects: the benches
//! read the filter as criterion does.

#[allow(dead_code)]
#[path = "../benches/common/filter.rs"]
mod filter;

use filter::Filter;

#[test]
fn no_filter_selects_every_case() {
    let filter = Filter::from_args(["--bench"]);
    assert!(filter.matches("imap/taskpool processes/10000"));
    assert!(filter.matches("round_trip/rayon/noop"));
}

#[test]
fn a_filter_selects_the_cases_it_matches_as_criterion_does() {
    let filter = Filter::from_args(["--bench", "^imap/"]);
    assert!(filter.matches("imap/taskpool processes/10000"));
    assert!(!filter.matches("map/taskpool processes/1000000"));
    // A plain word matches anywhere in the id.
    let filter = Filter::from_args(["--bench", "map"]);
    assert!(filter.matches("map/taskpool threads/1000000"));
    assert!(filter.matches("imap/taskpool threads/10000"));
    assert!(!filter.matches("round_trip/rayon/noop"));
}

#[test]
fn option_values_are_not_taken_for_the_filter() {
    let filter = Filter::from_args(["--bench", "--sample-size", "10", "-c", "never", "imap"]);
    assert!(filter.matches("imap/taskpool threads/10000"));
    assert!(!filter.matches("round_trip/rayon/10"));
    let filter = Filter::from_args(["--bench", "--save-baseline", "before"]);
    assert!(filter.matches("round_trip/rayon/noop"), "{filter:?}");
}

#[test]
fn exact_and_ignored_select_as_criterion_does() {
    let filter = Filter::from_args(["--bench", "--exact", "imap/rayon/10000"]);
    assert!(filter.matches("imap/rayon/10000"));
    assert!(!filter.matches("imap/rayon/100000"));
    assert!(!Filter::from_args(["--bench", "--ignored"]).matches("imap/rayon/10000"));
}
