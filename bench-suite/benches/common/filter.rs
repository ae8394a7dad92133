//! The benchmark filter of criterion's command line (`cargo bench -- FILTER`), read the way
//! criterion 0.8 reads it, so that a case the filter leaves out is not named as skipped.

use regex::Regex;

/// The options of criterion's command line that take a value.
const TAKE_A_VALUE: [&str; 20] = [
    "-c",
    "--color",
    "--colour",
    "-s",
    "--save-baseline",
    "-b",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--format",
    "--profile-time",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--plotting-backend",
    "--output-format",
];

/// Which benchmark ids a command line selects.
#[derive(Debug)]
pub(crate) enum Filter {
    /// No filter: every benchmark.
    All,
    /// `--ignored`: none.
    Nothing,
    /// `--exact FILTER`: the one named.
    Exact(String),
    /// `FILTER`: those it matches (a regular expression, as criterion reads it).
    Pattern(Regex),
}

impl Filter {
    /// The filter of this process's command line.
    pub(crate) fn current() -> Filter {
        Filter::from_args(std::env::args().skip(1))
    }

    /// The filter of `args` (the arguments after the program name). A pattern that is not a
    /// regular expression selects everything: criterion refuses it before any benchmark runs.
    pub(crate) fn from_args<I: IntoIterator<Item = S>, S: AsRef<str>>(args: I) -> Filter {
        let (mut text, mut exact, mut ignored) = (None, false, false);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_ref() {
                "--exact" => exact = true,
                "--ignored" => ignored = true,
                option if TAKE_A_VALUE.contains(&option) => drop(args.next()),
                option if option.starts_with('-') => {}
                positional => {
                    text.get_or_insert_with(|| positional.to_owned());
                }
            }
        }
        match text {
            _ if ignored => Filter::Nothing,
            None => Filter::All,
            Some(text) if exact => Filter::Exact(text),
            Some(text) => Regex::new(&text).map_or(Filter::All, Filter::Pattern),
        }
    }

    /// Whether the benchmark `id` (`group/variant/parameter`) is selected.
    pub(crate) fn matches(&self, id: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Nothing => false,
            Filter::Exact(name) => id == name,
            Filter::Pattern(pattern) => pattern.is_match(id),
        }
    }
}
