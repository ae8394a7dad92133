//! Small messages between two processes: a fresh producer process sends a marker, N small
//! integers (`Option<i64>`) and a sentinel through a queue or a pipe, and the parent takes
//! them; the clock runs from the marker's arrival to the sentinel's, so the producer's
//! start-up is left out. One row per kind of channel, in messages per second.
//!
//! | scenario | one iteration | report | criterion |
//! |---|---|---|---|
//! | `messages_queue` | N messages through `Queue` | `map_items / 10` messages, one per sample | 10 samples |
//! | `messages_pipe` | the same through a `Pipe` | the same | 10 samples |
//!
//! Python's `multiprocessing.Queue` and `multiprocessing.Pipe()` are measured the same way by
//! the Python script (with a fifth of the messages, as it is slower), in its process column.

use super::plan::Mode;
use super::scenario::{Scenario, Setup};
use super::suite::{Count, Iteration};
use super::{Plan, RowId};
use crate::columns::Op;
use crate::report::{Better, Unit};

/// A kind of channel between two processes.
///
/// # Examples
///
/// ```
/// use taskpool_bench::Channel;
///
/// assert_eq!(Channel::Queue.name(), "queue");
/// assert_eq!(Channel::ALL, [Channel::Queue, Channel::Pipe]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// A bounded queue (taskpool's `Queue`, Python's `multiprocessing.Queue`).
    Queue,
    /// One end of a two-way pipe (taskpool's `Pipe`, Python's `multiprocessing.Pipe()`).
    Pipe,
}

impl Channel {
    /// Every kind, in the report's order.
    pub const ALL: [Channel; 2] = [Channel::Queue, Channel::Pipe];

    /// Its name in row keys and benchmark ids: `queue` or `pipe`.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Queue => "queue",
            Channel::Pipe => "pipe",
        }
    }

    /// The calls each side makes, as the row's label says them.
    fn calls(self) -> &'static str {
        match self {
            Channel::Queue => "Queue: put / get",
            Channel::Pipe => "Pipe: send / recv",
        }
    }
}

/// The messages of one report sample: a tenth of the plan's `map` items (100,000 by default).
pub(crate) fn report_messages(plan: &Plan) -> u64 {
    plan.map_items as u64 / 10
}

/// The messages of one sample of the Python script: a fifth of ours.
pub(crate) fn script_messages(plan: &Plan) -> u64 {
    (report_messages(plan) / 5).max(1000)
}

/// The message scenarios, in the report's order.
pub(crate) static MESSAGES: [Scenario; 2] = [scenario(Channel::Queue), scenario(Channel::Pipe)];

const fn scenario(channel: Channel) -> Scenario {
    Scenario {
        name: match channel {
            Channel::Queue => "messages_queue",
            Channel::Pipe => "messages_pipe",
        },
        op: Op::Messages,
        row: match channel {
            Channel::Queue => |_| RowId::Messages(Channel::Queue),
            Channel::Pipe => |_| RowId::Messages(Channel::Pipe),
        },
        label: match channel {
            Channel::Queue => |_, n| label(Channel::Queue, n),
            Channel::Pipe => |_, n| label(Channel::Pipe, n),
        },
        unit: Unit::PerSecond,
        better: Better::Higher,
        sizes: |plan| match plan.mode {
            Mode::Quick => vec![report_messages(plan)],
            _ => vec![10_000, report_messages(plan)],
        },
        report_size: report_messages,
        parameter: |n| n.to_string(),
        per_sample: |_| 1,
        repeats: |plan| plan.repeats,
        count: Count::Elements,
        sample_size: |_| Some(10),
        prepare: match channel {
            Channel::Queue => |setup| prepare(setup, Channel::Queue),
            Channel::Pipe => |setup| prepare(setup, Channel::Pipe),
        },
    }
}

fn label(channel: Channel, n: u64) -> String {
    format!(
        "small messages child → parent, {n} Option<i64> per sample ({}; messages/s)",
        channel.calls()
    )
}

fn prepare(setup: &Setup<'_>, channel: Channel) -> Result<Iteration, String> {
    let (backend, n) = (setup.backend, setup.size);
    Ok(Box::new(move || backend.messages(channel, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_has_its_row_and_the_script_sends_a_fifth() {
        let plan = Plan::new(Mode::Default);
        let rows: Vec<_> = MESSAGES.iter().map(|s| ((s.row)(1).key(), s.name)).collect();
        assert_eq!(
            rows,
            [
                ("messages_queue".to_owned(), "messages_queue"),
                ("messages_pipe".to_owned(), "messages_pipe")
            ]
        );
        assert_eq!((report_messages(&plan), script_messages(&plan)), (100_000, 20_000));
        assert!((MESSAGES[1].label)(&plan, 5).contains("Pipe: send / recv"));
    }
}
