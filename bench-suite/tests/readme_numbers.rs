//! The README's "What the numbers say" is what the run it cites says.
//!
//! The section between the README's markers is generated from
//! `bench-suite/results/report.json` (a default run of the report binary, machine and load
//! included): the first test regenerates it and fails if the README differs; the second
//! recomputes every ratio a sentence states from the raw JSON, apart from the generator's
//! own arithmetic, and fails if the README states another.
//!
//! After a new run, copy its `report.json` to `bench-suite/results/` and rewrite the section:
//! `TASKPOOL_UPDATE_README=1 cargo test -p taskpool-bench --test readme_numbers`.

use std::path::PathBuf;

use serde_json::Value;
use taskpool_bench::Column;
use taskpool_bench::Summary;
use taskpool_bench::report::{
    Cell, README_BEGIN, README_END, Reference, Report, Sentence, Source, readme_numbers, sentences,
};

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

fn json_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/report.json")
}

fn json() -> String {
    std::fs::read_to_string(json_path()).expect("bench-suite/results/report.json")
}

/// The README, and the byte range of its generated section (between the marker lines).
fn readme() -> (String, std::ops::Range<usize>) {
    let text = std::fs::read_to_string(readme_path()).expect("README.md");
    let begin =
        text.find(README_BEGIN).expect("the README has no begin marker") + README_BEGIN.len() + 1;
    let end = text[begin..].find(README_END).expect("the README has no end marker") + begin;
    (text, begin..end)
}

#[test]
fn the_readme_numbers_are_generated_from_the_committed_run() {
    let report: Report = serde_json::from_str(&json()).expect("a report");
    let generated = readme_numbers(&report);
    let (text, range) = readme();
    let current = text[range.clone()].trim_end_matches('\n');
    if current == generated.trim_end_matches('\n') {
        return;
    }
    if std::env::var_os("TASKPOOL_UPDATE_README").is_some() {
        let updated =
            format!("{}{}\n{}", &text[..range.start], generated.trim_end(), &text[range.end..]);
        std::fs::write(readme_path(), updated).expect("writing README.md");
        return;
    }
    let first = current.lines().zip(generated.lines()).position(|(a, b)| a != b);
    panic!(
        "the README's numbers are not what bench-suite/results/report.json says (first \
         difference at line {first:?} of the section); rewrite them with \
         `TASKPOOL_UPDATE_README=1 cargo test -p taskpool-bench --test readme_numbers`"
    );
}

/// The median of `source` in the raw JSON's row `key`.
fn raw_median(json: &Value, key: &str, source: &Source) -> f64 {
    let rows =
        json["sections"].as_array().unwrap().iter().flat_map(|s| s["rows"].as_array().unwrap());
    let row = rows.into_iter().find(|r| r["key"] == key).unwrap_or_else(|| panic!("no row {key}"));
    let value = match source {
        Source::Column(column) => &row["cells"][column.key()]["Value"]["median"],
        Source::Reference(name) => {
            let references = row["references"].as_array().unwrap();
            &references.iter().find(|r| r["name"] == name.as_str()).unwrap()["value"]["median"]
        }
    };
    value.as_f64().unwrap_or_else(|| panic!("no value for {source:?} in {key}"))
}

#[test]
fn every_ratio_the_readme_states_is_what_the_json_says() {
    let text = json();
    let raw: Value = serde_json::from_str(&text).unwrap();
    let report: Report = serde_json::from_str(&text).unwrap();
    let (readme, range) = readme();
    let section = &readme[range];
    let claims: Vec<Sentence> = sentences(&report);
    assert!(!claims.is_empty(), "the committed run supports no sentence");
    let mut checked = 0;
    for claim in &claims {
        assert!(section.contains(&claim.text), "the README lacks: {}", claim.text);
        for cited in &claim.cited {
            let ratio =
                raw_median(&raw, &cited.row, &cited.of) / raw_median(&raw, &cited.row, &cited.to);
            let number = cited.shown.trim_end_matches('×');
            let shown: f64 = number.parse().unwrap();
            let decimals = number.split_once('.').map_or(0, |(_, d)| d.len());
            let tolerance = 0.5 * 10f64.powi(-(decimals as i32)) + 1e-9;
            assert!(
                (ratio - shown).abs() <= tolerance,
                "{}: {:?} over {:?} is {ratio}, the README says {}",
                cited.row,
                cited.of,
                cited.to,
                cited.shown
            );
            assert!(claim.text.contains(&cited.shown), "{}", claim.text);
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} ratios checked");
}

/// A run with the copy floor in the 64 MiB payload row states the ratio to it, cited from the
/// row; a run without it (as the committed one may be) leaves the clause out.
#[test]
fn the_payload_sentence_states_the_ratio_to_the_copy_floor_when_the_run_has_it() {
    let mut report: Report = serde_json::from_str(&json()).expect("a report");
    let row = report
        .sections
        .iter_mut()
        .flat_map(|s| &mut s.rows)
        .find(|r| r.key == "payload_64mib")
        .expect("a 64 MiB payload row");
    row.references.retain(|r| r.name != "copy floor");
    let without = sentences(&report);
    let payloads = |claims: &[Sentence]| {
        claims.iter().find(|c| c.text.starts_with("**Payloads.**")).cloned().expect("payloads")
    };
    let clause = "the copies a round trip of an owned buffer";
    assert!(!payloads(&without).text.contains(clause), "{}", payloads(&without).text);
    let row = report
        .sections
        .iter_mut()
        .flat_map(|s| &mut s.rows)
        .find(|r| r.key == "payload_64mib")
        .unwrap();
    let Some(Cell::Value(ours)) = row.cells.get(&Column::TASKPOOL_PROCESSES) else {
        panic!("the committed run has no 64 MiB cell for processes")
    };
    let floor = Summary::of(vec![ours.median / 4.0]).unwrap();
    row.references.push(Reference::new("copy floor", floor));
    let with = payloads(&sentences(&report));
    assert!(
        with.text.contains(" and 4.0× the copies a round trip of an owned buffer"),
        "{}",
        with.text
    );
    let cited = with.cited.last().unwrap();
    assert_eq!((cited.row.as_str(), cited.shown.as_str()), ("payload_64mib", "4.0×"));
    assert_eq!(cited.to, Source::Reference("copy floor".into()));
}
