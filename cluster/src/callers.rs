//! What an agent knows of the callers whose tasks it takes: when it last heard each, which it
//! took for gone, and how long each may be silent (a header of its task messages).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::pool::ABANDON_AFTER_HEADER;

/// A gap this long between two looks for gone callers means that the agent itself did not
/// run (it was stopped, or starved): it heard no one meanwhile, which says nothing about the
/// callers.
pub(crate) const STALLED: Duration = Duration::from_secs(1);

/// How long an agent waits for the first beat of a caller it has never heard, from when it
/// first sees a task of it, before it judges it (three of the caller's beats, one a second).
/// A caller beats before it sends its first task, but its beats come another way than its
/// tasks (on a connection of their own, on a subject no stream keeps, maybe through another
/// server of a cluster), so its first beat may reach the agent after its first task.
pub(crate) const FIRST_BEAT: Duration = Duration::from_secs(3);

/// What an agent knows of the callers whose tasks it takes, by its own clock: a caller's
/// silence is how long since this agent last heard it, never a time that a message carries
/// (machines' clocks differ).
pub(crate) struct Callers {
    /// When each caller was last heard.
    pub(crate) heard: HashMap<String, Instant>,
    /// When the agent first saw a task of each caller it has not heard.
    pub(crate) seen: HashMap<String, Instant>,
    /// Since when the agent has been connected and running without a break: while it is not,
    /// it hears no one, which says nothing about the callers. No caller is silent for longer
    /// than this.
    pub(crate) listening: Instant,
    /// When the agent last looked for gone callers: it judges none while this is older than
    /// [`STALLED`].
    pub(crate) awake: Instant,
    /// The callers taken for gone.
    pub(crate) gone: HashMap<String, Gone>,
    /// Callers whose results the agent stored lately, with their bounds and when: one that
    /// turns out gone has them removed, though it has no unit here any more.
    pub(crate) stored: HashMap<String, (Duration, Instant)>,
}

/// A caller taken for gone, and what became of its tasks here.
pub(crate) struct Gone {
    /// How long it may be silent.
    pub(crate) bound: Duration,
    /// When the last unit of it came or finished here.
    pub(crate) last: Instant,
    /// Its units dropped without running.
    pub(crate) dropped: u64,
    /// Its units stopped, or whose results were thrown away, as they ran.
    pub(crate) stopped: u64,
    /// Whether the agent said it was gone when it took it for gone: it had units here then.
    pub(crate) announced: bool,
}

impl Gone {
    /// Whether what became of the caller's tasks here is worth saying when the agent forgets
    /// it: it was said to be gone, or units of it were dropped or stopped. A caller taken for
    /// gone only because results were stored for it lately had nothing here to lose: a pool
    /// whose program ended after its last task here, dropped or not, which every program
    /// does, has its results removed without a word.
    pub(crate) fn worth_saying(&self) -> bool {
        self.announced || self.dropped > 0 || self.stopped > 0
    }
}

impl Callers {
    /// Nobody heard yet; the agent listens from `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Callers {
            heard: HashMap::new(),
            seen: HashMap::new(),
            listening: now,
            awake: now,
            gone: HashMap::new(),
            stored: HashMap::new(),
        }
    }

    /// Notes that the agent looks for gone callers at `now`, `connected` to its server or not:
    /// silence counts only from when it is connected and running again.
    pub(crate) fn look(&mut self, now: Instant, connected: bool) {
        if !connected || now.saturating_duration_since(self.awake) >= STALLED {
            self.listening = now;
        }
        self.awake = now;
    }

    /// Notes that `caller` says it is alive at `now`; returns whether it is new here: not
    /// heard before, or forgotten since.
    pub(crate) fn hear(&mut self, caller: String, now: Instant) -> bool {
        self.seen.remove(&caller);
        self.heard.insert(caller, now).is_none()
    }

    /// Notes that a task of `caller` is here at `now`: the first task of a caller not heard
    /// starts the agent's wait for its first beat ([`FIRST_BEAT`]).
    pub(crate) fn saw(&mut self, caller: &str, now: Instant) {
        if !self.heard.contains_key(caller) && !self.seen.contains_key(caller) {
            self.seen.insert(caller.to_string(), now);
        }
    }

    /// Forgets the callers last heard, or first seen unheard, `age` or longer before `now`.
    pub(crate) fn forget(&mut self, now: Instant, age: Duration) {
        self.heard.retain(|_, heard| now.saturating_duration_since(*heard) < age);
        self.seen.retain(|_, seen| now.saturating_duration_since(*seen) < age);
    }

    /// How long `caller` has been silent, by this agent's clock; `None` if the agent cannot
    /// tell now: it did not run for a while, and has not looked since; or it has not heard the
    /// caller yet, and first saw a task of it (or none) less than [`FIRST_BEAT`] ago. A caller
    /// never heard is silent since the agent listens.
    pub(crate) fn silence(&self, caller: &str, now: Instant) -> Option<Duration> {
        if now.saturating_duration_since(self.awake) >= STALLED {
            return None;
        }
        let since = match self.heard.get(caller) {
            Some(&heard) => heard.max(self.listening),
            None => {
                let seen = self.seen.get(caller).copied().unwrap_or(now);
                if now.saturating_duration_since(seen) < FIRST_BEAT {
                    return None;
                }
                self.listening
            }
        };
        Some(now.saturating_duration_since(since))
    }
}

/// How long the caller of a message with `headers` may be silent before it counts as gone,
/// as it says in a header; `None` if it does not (a caller older than this header), or says
/// something else than a number of milliseconds.
pub(crate) fn abandon_after(headers: Option<&async_nats::HeaderMap>) -> Option<Duration> {
    let value = headers?.get(ABANDON_AFTER_HEADER)?;
    value.as_str().trim().parse::<u64>().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_whose_caller_says_so_can_be_abandoned() {
        let mut headers = async_nats::HeaderMap::new();
        assert_eq!(abandon_after(None), None, "a caller older than the header");
        assert_eq!(abandon_after(Some(&headers)), None);
        headers.insert(ABANDON_AFTER_HEADER, "3000");
        assert_eq!(abandon_after(Some(&headers)), Some(Duration::from_secs(3)));
        headers.insert(ABANDON_AFTER_HEADER, "soon");
        assert_eq!(abandon_after(Some(&headers)), None);
    }

    #[test]
    fn a_caller_gone_with_nothing_here_to_lose_goes_without_a_word() {
        let quiet = Gone {
            bound: Duration::from_secs(30),
            last: Instant::now(),
            dropped: 0,
            stopped: 0,
            announced: false,
        };
        assert!(!quiet.worth_saying(), "a program that ended after its last task here");
        assert!(Gone { dropped: 1, ..quiet }.worth_saying());
        assert!(Gone { stopped: 1, ..quiet }.worth_saying());
        assert!(Gone { announced: true, ..quiet }.worth_saying());
    }

    #[test]
    fn a_callers_silence_counts_only_while_the_agent_listens() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut callers = Callers::new(start);
        callers.look(at(200), true);
        callers.hear("a".into(), at(250));
        assert_eq!(callers.silence("a", at(300)), Some(Duration::from_millis(50)));
        // Cut off from the server: nobody is silent for longer than since it is back.
        callers.look(at(400), false);
        callers.look(at(600), true);
        assert_eq!(callers.silence("a", at(700)), Some(Duration::from_millis(300)));
        // The agent itself did not run for a while: it cannot tell, then counts from now.
        assert_eq!(callers.silence("a", at(5_000)), None);
        callers.look(at(5_000), true);
        assert_eq!(callers.silence("a", at(5_100)), Some(Duration::from_millis(100)));
    }

    #[test]
    fn a_caller_not_heard_yet_is_not_gone_before_its_first_beat_can_come() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let bound = Duration::from_secs(3);
        let mut callers = Callers::new(start);
        // The agent has listened for far longer than the bound (looking every 250 ms, as it
        // does) when the first task of a new caller comes, before the caller's first beat.
        let first = 10_000;
        for ms in (250..=first).step_by(250) {
            callers.look(at(ms), true);
        }
        callers.saw("new", at(first));
        let silence = callers.silence("new", at(first));
        assert!(silence.is_none_or(|s| s <= bound), "taken for gone: silent for {silence:?}");
        // Its first beat comes a moment later: silent since then.
        callers.look(at(first + 200), true);
        callers.hear("new".into(), at(first + 150));
        callers.saw("new", at(first + 200));
        assert_eq!(callers.silence("new", at(first + 200)), Some(Duration::from_millis(50)));
    }

    #[test]
    fn a_caller_never_heard_is_silent_since_the_agent_listens_once_its_beat_is_overdue() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut callers = Callers::new(start);
        let first = 10_000;
        let overdue = first + FIRST_BEAT.as_millis() as u64;
        // The agent looks every 250 ms, as it does.
        for ms in (250..=overdue).step_by(250) {
            callers.look(at(ms), true);
            if ms == first {
                callers.saw("dead", at(first));
            }
            if ms == first + 2_000 {
                // Another task of it later does not start the wait again.
                callers.saw("dead", at(ms));
                assert_eq!(callers.silence("dead", at(ms)), None);
            }
        }
        assert_eq!(callers.silence("dead", at(overdue)), Some(Duration::from_millis(overdue)));
        // Forgotten after a while, as callers heard are.
        callers.forget(at(overdue), Duration::from_secs(3));
        assert!(callers.seen.is_empty());
    }
}
