//! What an agent knows of the callers whose tasks it takes: when it last heard each, which it
//! took for gone, and how long each may be silent (a header of its task messages).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::pool::ABANDON_AFTER_HEADER;

/// A gap this long between two looks for gone callers means that the agent itself did not
/// run (it was stopped, or starved): it heard no one meanwhile, which says nothing about the
/// callers.
pub(crate) const STALLED: Duration = Duration::from_secs(1);

/// What an agent knows of the callers whose tasks it takes, by its own clock: a caller's
/// silence is how long since this agent last heard it, never a time that a message carries
/// (machines' clocks differ).
pub(crate) struct Callers {
    /// When each caller was last heard.
    pub(crate) heard: HashMap<String, Instant>,
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

    /// How long `caller` has been silent, by this agent's clock; `None` if the agent cannot
    /// tell now (it did not run for a while, and has not looked since).
    pub(crate) fn silence(&self, caller: &str, now: Instant) -> Option<Duration> {
        if now.saturating_duration_since(self.awake) >= STALLED {
            return None;
        }
        let heard = self.heard.get(caller).map_or(self.listening, |&h| h.max(self.listening));
        Some(now.saturating_duration_since(heard))
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
        // Never heard: silent since the agent listens.
        callers.look(at(200), true);
        assert_eq!(callers.silence("a", at(300)), Some(Duration::from_millis(300)));
        callers.heard.insert("a".into(), at(250));
        assert_eq!(callers.silence("a", at(300)), Some(Duration::from_millis(50)));
        // Cut off from the server: nobody is silent for longer than since it is back.
        callers.look(at(400), false);
        callers.look(at(600), true);
        assert_eq!(callers.silence("a", at(700)), Some(Duration::from_millis(300)));
        assert_eq!(callers.silence("b", at(700)), Some(Duration::from_millis(300)));
        // The agent itself did not run for a while: it cannot tell, then counts from now.
        assert_eq!(callers.silence("a", at(5_000)), None);
        callers.look(at(5_000), true);
        assert_eq!(callers.silence("a", at(5_100)), Some(Duration::from_millis(100)));
    }
}
