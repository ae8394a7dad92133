//! The scheduler's rules against a fake OS side: no processes, no pipes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use taskpool_core::Config;

use super::*;
use crate::batching::{LONG_ITEM_MEMORY, Paced};
use crate::run::RunBuilder;
use crate::ship::Shipped;
use crate::sink::{Received, Sink, Tally};

/// A worker process that records what was asked of it.
#[derive(Default)]
pub(crate) struct FakeProcess {
    kills: AtomicUsize,
    progress: Mutex<Option<Progress>>,
    cancelled: Mutex<Vec<u64>>,
    recalled: Mutex<Vec<u64>>,
    dying_of_signal: AtomicBool,
    asked_to_leave: AtomicBool,
}

impl FakeProcess {
    fn set(&self, started: u64, finished: u64) {
        *self.progress.lock().unwrap() = Some(Progress { started, finished });
    }

    fn kills(&self) -> usize {
        self.kills.load(Ordering::SeqCst)
    }
}

impl Process for FakeProcess {
    fn kill(&self) {
        self.kills.fetch_add(1, Ordering::SeqCst);
    }

    fn progress(&self) -> Option<Progress> {
        *self.progress.lock().unwrap()
    }

    fn cancel(&self, seq: u64) -> Option<Progress> {
        self.cancelled.lock().unwrap().push(seq);
        self.progress()
    }

    fn recall(&self, before: u64) -> Option<Progress> {
        self.recalled.lock().unwrap().push(before);
        self.progress()
    }

    fn dying_of_signal(&self) -> bool {
        self.dying_of_signal.load(Ordering::SeqCst)
    }

    fn ask_to_leave(&self) -> bool {
        self.asked_to_leave.store(true, Ordering::SeqCst);
        self.progress().is_some()
    }
}

/// A request pipe that takes everything.
struct NullPipe;

impl RequestPipe for NullPipe {
    fn write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        Ok(bytes.len())
    }
}

/// A sink that keeps nothing.
pub(crate) struct NullSink;

impl Sink for NullSink {
    fn deliver(&self, _: usize, _: Received<'_>, _: &Tally, release: &dyn Fn()) {
        release();
    }
}

/// A sink that records what it was given: item index and error (`None` for a value).
#[derive(Default)]
pub(crate) struct Recorder {
    /// Item index and error (`None` for a value) of each outcome delivered.
    pub(crate) got: Mutex<Vec<(usize, Option<String>)>>,
    settled: AtomicBool,
    cancellable: bool,
}

impl Sink for Arc<Recorder> {
    fn deliver(&self, first: usize, outcomes: Received<'_>, _: &Tally, release: &dyn Fn()) {
        release();
        let mut got = self.got.lock().unwrap();
        for (i, o) in outcomes.iter().enumerate() {
            got.push((first + i, o.err().map(|e| e.to_string())));
        }
    }

    fn is_settled(&self, _: usize) -> bool {
        self.settled.load(Ordering::SeqCst)
    }

    fn is_cancellable(&self) -> bool {
        self.cancellable
    }
}

pub(crate) fn run(n: usize, sink: impl Sink + 'static, batching: Batching) -> Arc<Run> {
    let mut b = RunBuilder::new(Paced::new(Shipped {
        entry: 0,
        state: Vec::new(),
        kept: Default::default(),
    }));
    for i in 0..n {
        b.push_encoded(&[u8::try_from(i % 256).unwrap()]);
    }
    Arc::new(b.finish(sink, None, batching))
}

/// Teaches `run`'s job that its items take `ns` each, as if its workers had measured them.
fn measured(run: &Run, ns: u64) {
    (0..200).for_each(|_| run.job.pace.record(ns));
}

/// A pool of `workers` slots, on as many CPUs as it has workers (whatever this machine has).
pub(crate) fn shared(config: ProcessConfig, workers: usize) -> Shared {
    let wakes = (0..workers).map(|_| sys::eventfd().unwrap()).collect();
    let mut shared = Shared::new(config, wakes);
    shared.cpus = workers.max(1);
    shared
}

/// Puts a ready worker in slot `w`: the fake `process`, whose requests go to `pipe`.
fn attach(shared: &Shared, w: usize, process: Arc<FakeProcess>, pipe: Arc<dyn RequestPipe>) {
    let mut conn = Conn::new(100 + w as u32, process, pipe);
    conn.ready = true;
    shared.lock().slots[w].conn = Some(conn);
}

/// Puts a ready worker with a fake process in slot `w`, and writes it what it is sent.
pub(crate) fn connect(shared: &Shared, w: usize) -> Arc<FakeProcess> {
    let fake = Arc::new(FakeProcess::default());
    attach(shared, w, fake.clone(), Arc::new(NullPipe));
    let flushes = shared.pump_all(&mut shared.lock());
    shared.flush(flushes);
    fake
}

fn sent(shared: &Shared, w: usize) -> usize {
    shared.lock().slots[w].sent.iter().map(|s| s.items.len()).sum()
}

fn end(shared: &Shared, w: usize, exit: Exit, progress: Option<Progress>) -> Deliveries {
    let mut deliveries = Deliveries::default();
    let mut state = shared.lock();
    let conn = state.slots[w].conn.take();
    shared.worker_ended(&mut state, w, conn, exit, progress, &mut deliveries);
    deliveries
}

fn deliver(d: Deliveries, shared: &Shared) {
    let n = d.deliver_from(&|_| &[], &shared.tally);
    shared.delivered(&mut shared.lock(), n);
}

#[test]
fn a_crash_blames_only_the_running_item_and_requeues_the_rest_in_order() {
    let s = shared(ProcessConfig::new(Config::new().workers(1).chunk_size(4)).in_flight(3), 1);
    let rec = Arc::new(Recorder::default());
    let r = run(12, rec.clone(), Batching::Fixed(4));
    measured(&r, 1);
    s.submit(r);
    let fake = connect(&s, 0);
    assert_eq!(sent(&s, 0), 12, "three batches of four");
    let now = Instant::now();
    // Items 0 and 1 answered; item 4 runs (2 and 3 finished, their results lost).
    for seq in 0..2 {
        s.answered(&mut s.lock(), 0, seq..seq + 1, (now, 1), false, |_, _| {}).unwrap();
    }
    fake.set(5, 4);
    let d = end(&s, 0, Exit::Code(0), fake.progress());
    deliver(d, &s);
    assert_eq!(*rec.got.lock().unwrap(), [(4, Some("worker exited with code 0".into()))]);
    let state = s.lock();
    let queued: Vec<_> = state.queue.iter().flat_map(|sl| sl.items.clone()).collect();
    assert_eq!(queued, [2, 3, 5, 6, 7, 8, 9, 10, 11], "the rest, in order, once");
    assert_eq!(state.counters.crashes, 1);
}

#[test]
fn a_worker_killed_between_items_blames_nobody() {
    let s = shared(ProcessConfig::new(Config::new().workers(1)), 1);
    let rec = Arc::new(Recorder::default());
    s.submit(run(3, rec.clone(), Batching::Fixed(1)));
    let fake = connect(&s, 0);
    fake.set(1, 1);
    deliver(end(&s, 0, Exit::Signal(9), fake.progress()), &s);
    assert!(rec.got.lock().unwrap().is_empty());
    assert_eq!(s.lock().queue.iter().map(|sl| sl.items.len()).sum::<usize>(), 3);
    assert_eq!(s.lock().counters.crashes, 0);
}

/// A worker sent `n` items measured at 1 ms, one per batch, answered the first `answered`
/// and, having run `ran`, left because a task closed its result pipe. Returns the pool, with
/// what was delivered.
fn left_for_a_closed_pipe(n: usize, answered: u64, ran: u64) -> (Shared, Arc<Recorder>) {
    let s = shared(ProcessConfig::new(Config::new().workers(1)).in_flight(8), 1);
    let rec = Arc::new(Recorder::default());
    let r = run(n, rec.clone(), Batching::Fixed(1));
    measured(&r, 1_000_000);
    s.submit(r);
    let fake = connect(&s, 0);
    assert_eq!(sent(&s, 0), n);
    for seq in 0..answered {
        s.answered(&mut s.lock(), 0, seq..seq + 1, (Instant::now(), 1), false, |_, _| {}).unwrap();
    }
    fake.set(ran, ran);
    deliver(end(&s, 0, Exit::Code(EXIT_PIPE_CLOSED), fake.progress()), &s);
    (s, rec)
}

/// A worker whose result pipe ends while it runs is not killed: asked through its status page
/// to leave after the item it runs, it writes the results it holds to its ring and leaves
/// (a kill would fail the item it runs, which may not be the one that closed the pipe, and
/// lose the results it holds). It is sent nothing more, and its function is checked from
/// now on. Only if it runs on with the same item past the grace is it killed, for that item.
#[test]
fn a_closed_pipe_asks_the_worker_to_leave_and_kills_it_only_for_an_item_that_runs_on() {
    for checks in [false, true] {
        let s = shared(ProcessConfig::new(Config::new().workers(1)), 1);
        let r = run(3, NullSink, Batching::Fixed(3));
        if checks {
            r.job.pace.suspect_descriptors();
        }
        s.submit(r.clone());
        let fake = connect(&s, 0);
        fake.set(2, 1);
        let before = Instant::now();
        s.pipe_closed(&mut s.lock(), 0);
        let now = Instant::now();
        assert_eq!(fake.kills(), 0, "asked to check: {checks}");
        assert!(fake.asked_to_leave.load(Ordering::SeqCst));
        assert!(r.job.pace.closes_descriptors(), "its function is checked from now on");
        assert!(!s.lock().slots[0].conn.as_ref().unwrap().takes_work(u64::MAX));
        let due = s.unheard_due(&mut s.lock(), 0, now).unwrap();
        let grace = UNHEARD_GRACE_FLOOR;
        assert!(before + grace <= due && due <= now + grace, "an estimate of 1 ms");
        // It moved on to its next item (it started that before it saw the request): that
        // item gets its grace from now.
        fake.set(3, 2);
        let later = s.unheard_due(&mut s.lock(), 0, due).unwrap();
        assert_eq!((later.duration_since(due), fake.kills()), (UNHEARD_GRACE_FLOOR, 0));
        assert_eq!(s.unheard_due(&mut s.lock(), 0, later), None);
        assert_eq!(fake.kills(), 1);
        let killed = s.lock().slots[0].conn.as_ref().unwrap().killed.clone().unwrap();
        assert_eq!(killed.seq, Some(2), "for the item that ran on");
    }
}

/// A worker asked to leave because its result pipe ended, idle, sees its requests end and
/// exits 0: nobody is blamed, and no death is counted against what it was sent.
#[test]
fn a_worker_asked_to_leave_that_exits_between_items_blames_nobody() {
    let s = shared(ProcessConfig::new(Config::new().workers(1)), 1);
    let rec = Arc::new(Recorder::default());
    s.submit(run(3, rec.clone(), Batching::Fixed(1)));
    let fake = connect(&s, 0);
    s.answered(&mut s.lock(), 0, 0..1, (Instant::now(), 1), false, |_, _| {}).unwrap();
    fake.set(1, 1);
    s.pipe_closed(&mut s.lock(), 0);
    deliver(end(&s, 0, Exit::Code(0), fake.progress()), &s);
    assert!(rec.got.lock().unwrap().is_empty());
    assert_eq!(queued(&s), [1, 2]);
    let state = s.lock();
    assert_eq!(state.queue.front().map(|sl| sl.deaths), Some(0));
    assert_eq!((state.counters.crashes, state.fruitless_deaths), (0, 0));
}

/// The items of `s`'s queue, in order.
fn queued(s: &Shared) -> Vec<usize> {
    s.lock().queue.iter().flat_map(|sl| sl.items.clone()).collect()
}

#[test]
fn a_worker_that_left_for_a_closed_pipe_blames_its_last_task_only_if_unanswered() {
    // Items 0 and 1 of 6 answered, item 2 ran and its result did not come through.
    let (s, rec) = left_for_a_closed_pipe(6, 2, 3);
    assert_eq!(
        *rec.got.lock().unwrap(),
        [(2, Some(format!("worker broke the protocol: {PIPE_CLOSED}")))]
    );
    assert_eq!(queued(&s), [3, 4, 5], "not started: sent elsewhere");
    let state = s.lock();
    assert_eq!((state.counters.crashes, state.fruitless_deaths), (0, 0));
    drop(state);
    // Its result came through: nobody is blamed, the rest goes elsewhere, and no death is
    // counted against the item it had not started.
    let (s, rec) = left_for_a_closed_pipe(3, 1, 1);
    assert!(rec.got.lock().unwrap().is_empty());
    assert_eq!(queued(&s), [1, 2]);
    assert_eq!(s.lock().queue.front().map(|sl| sl.deaths), Some(0));
}

#[test]
fn without_a_status_page_the_head_is_blamed() {
    let s = shared(ProcessConfig::new(Config::new().workers(1)), 1);
    let rec = Arc::new(Recorder::default());
    s.submit(run(2, rec.clone(), Batching::Fixed(1)));
    connect(&s, 0);
    deliver(end(&s, 0, Exit::Signal(11), None), &s);
    let got = rec.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 0);
    assert!(got[0].1.as_deref().unwrap().contains("SIGSEGV"));
}

#[test]
fn a_kill_blames_the_item_it_was_for_and_later_frames_do_not_count() {
    let s = shared(ProcessConfig::new(Config::new().workers(1)).in_flight(3), 1);
    let rec = Arc::new(Recorder::default());
    s.submit(run(3, rec.clone(), Batching::Fixed(1)));
    let fake = connect(&s, 0);
    let mut state = s.lock();
    let conn = state.slots[0].conn.as_mut().unwrap();
    conn.kill(KillReason::Cancelled, Some(1));
    conn.kill(KillReason::Shutdown, None);
    assert_eq!(fake.kills(), 1, "killed once");
    assert!(conn.accepts(0) && !conn.accepts(1) && !conn.accepts(2));
    drop(state);
    s.answered(&mut s.lock(), 0, 0..1, (Instant::now(), 1), false, |_, _| {}).unwrap();
    fake.set(2, 1);
    deliver(end(&s, 0, Exit::Signal(9), fake.progress()), &s);
    assert_eq!(*rec.got.lock().unwrap(), [(1, Some("task cancelled".into()))]);
    assert_eq!(s.lock().counters.crashes, 0, "a kill is not a crash");
}

/// A pool of one worker whose tasks have `limit`, and one task queued, whose outcome the
/// recorder gets.
fn one_timed_task(limit: Duration) -> (Shared, Arc<Recorder>) {
    let s = shared(ProcessConfig::new(Config::new().workers(1).timeout(limit)), 1);
    let rec = Arc::new(Recorder::default());
    s.submit(run(1, rec.clone(), Batching::Fixed(1)));
    (s, rec)
}

/// Ends worker 0, killed for the 5 ms limit of its one item, and checks that the item failed
/// saying so.
fn timed_out_with_its_worker(s: &Shared, fake: &FakeProcess, rec: &Recorder) {
    deliver(end(s, 0, Exit::Signal(9), fake.progress()), s);
    let expected = "timed out after 5ms (the task no longer runs)";
    assert_eq!(*rec.got.lock().unwrap(), [(0, Some(expected.into()))]);
}

#[test]
fn a_result_read_at_the_deadline_counts_and_a_late_one_times_out() {
    let limit = Duration::from_millis(5);
    let (s, rec) = one_timed_task(limit);
    let fake = connect(&s, 0);
    fake.set(1, 0);
    let later = Instant::now() + Duration::from_secs(1);
    let due = s.police(&mut s.lock(), 0, later, || true);
    assert_eq!(due, Some(later), "a waiting answer is read first");
    assert_eq!(fake.kills(), 0);
    fake.set(1, 1);
    assert_eq!(s.police(&mut s.lock(), 0, later, || false), Some(later), "finished: read first");
    fake.set(1, 0);
    assert_eq!(s.police(&mut s.lock(), 0, later, || false), None);
    assert_eq!(fake.kills(), 1);
    assert_eq!(s.lock().counters.timeouts, 1);
    timed_out_with_its_worker(&s, &fake, &rec);
}

/// The frames for a worker are queued under the pool's lock and written once it is released:
/// a thread descheduled in between holds an item back from its worker. Its clock starts when
/// its frame is written, so that an item the worker never had is not killed for its time.
#[test]
fn an_item_whose_frame_is_not_written_yet_does_not_time_out() {
    let limit = Duration::from_millis(5);
    let (s, rec) = one_timed_task(limit);
    let fake = Arc::new(FakeProcess::default());
    let pipe = Arc::new(Recording::default());
    attach(&s, 0, fake.clone(), pipe.clone());
    // Sent to the idle worker: its clock would start now, its frame is still in the outbox.
    let flushes = s.pump_all(&mut s.lock());
    assert_eq!(sent(&s, 0), 1);
    fake.set(0, 0);
    let later = Instant::now() + Duration::from_secs(1);
    let due = s.police(&mut s.lock(), 0, later, || false).expect("a look again");
    assert!(due > later, "looked at again later: {due:?}");
    assert_eq!(fake.kills(), 0, "the worker never had the item");
    assert_eq!(s.lock().counters.timeouts, 0);
    // Written: its time counts from now on; the worker starts it.
    s.flush(flushes);
    assert_eq!(pipe.batches().len(), 1);
    fake.set(1, 0);
    let written = Instant::now();
    let due = s.police(&mut s.lock(), 0, written, || false).expect("a deadline");
    assert!(due > written, "{due:?}");
    assert_eq!(s.police(&mut s.lock(), 0, later + limit, || false), None);
    assert_eq!(fake.kills(), 1);
    timed_out_with_its_worker(&s, &fake, &rec);
}

/// A worker stopped (or given no CPU) before it starts its item holds it past the item's
/// limit: the item's time counts from when the pool sees it start, not from when it was sent.
#[test]
fn an_item_its_worker_has_not_started_at_the_deadline_gets_its_time_from_its_start() {
    let limit = Duration::from_millis(5);
    let (s, rec) = one_timed_task(limit);
    let fake = connect(&s, 0);
    fake.set(0, 0);
    let later = Instant::now() + Duration::from_secs(1);
    let due = s.police(&mut s.lock(), 0, later, || false);
    assert_eq!(due, Some(later + Duration::from_millis(1)), "looked at again soon");
    let again = later + limit;
    assert_eq!(s.police(&mut s.lock(), 0, again, || false), Some(again + Duration::from_millis(1)));
    assert_eq!((fake.kills(), s.lock().counters.timeouts), (0, 0), "it never started");
    // Seen started: its full limit from then.
    fake.set(1, 0);
    let seen = later + 2 * limit;
    assert_eq!(s.police(&mut s.lock(), 0, seen, || false), Some(seen + limit));
    assert_eq!(s.police(&mut s.lock(), 0, seen + limit / 2, || false), Some(seen + limit));
    assert_eq!(fake.kills(), 0);
    assert_eq!(s.police(&mut s.lock(), 0, seen + limit, || false), None);
    assert_eq!(fake.kills(), 1);
    timed_out_with_its_worker(&s, &fake, &rec);
}

#[test]
fn a_worker_dying_of_a_crash_at_the_deadline_is_not_killed_and_its_task_fails_with_it() {
    let limit = Duration::from_millis(5);
    let (s, rec) = one_timed_task(limit);
    let fake = connect(&s, 0);
    fake.set(1, 0);
    // Crashed, and dumping core: the kernel ends it once the core is written.
    fake.dying_of_signal.store(true, Ordering::SeqCst);
    let later = Instant::now() + Duration::from_secs(1);
    let due = s.police(&mut s.lock(), 0, later, || false).expect("a look again");
    assert!(due > later, "looked at again later: {due:?}");
    assert_eq!(fake.kills(), 0, "the core is not cut short");
    assert_eq!(s.lock().counters.timeouts, 0);
    deliver(end(&s, 0, Exit::Signal(11), fake.progress()), &s);
    assert_eq!(
        *rec.got.lock().unwrap(),
        [(0, Some(TaskError::Crashed(Exit::Signal(11)).to_string()))]
    );
}

#[test]
fn cancel_while_sent_asks_the_worker_to_skip_and_kills_only_if_it_runs() {
    let s = shared(ProcessConfig::new(Config::new().workers(1)).in_flight(4), 1);
    let recs: Vec<Arc<Recorder>> =
        (0..3).map(|_| Arc::new(Recorder { cancellable: true, ..Recorder::default() })).collect();
    let runs: Vec<_> = recs.iter().map(|r| run(1, r.clone(), Batching::Fixed(1))).collect();
    let fake = connect(&s, 0);
    for r in &runs {
        s.submit(r.clone());
    }
    assert_eq!(sent(&s, 0), 3);
    fake.set(1, 0);
    // Item 2 is sent, not started: the worker is asked to skip it, and nothing is killed.
    recs[2].settled.store(true, Ordering::SeqCst);
    s.cancel(&runs[2]);
    assert_eq!(*fake.cancelled.lock().unwrap(), [2]);
    assert_eq!(fake.kills(), 0);
    // Item 0 runs: its worker is killed.
    recs[0].settled.store(true, Ordering::SeqCst);
    s.cancel(&runs[0]);
    assert_eq!(fake.kills(), 1);
}

#[test]
fn a_queued_cancelled_item_is_dropped_unsent() {
    let s = shared(ProcessConfig::new(Config::new().workers(1)), 1);
    let rec = Arc::new(Recorder::default());
    let r = run(1, rec.clone(), Batching::Fixed(1));
    s.submit(r.clone());
    assert_eq!(s.lock().outstanding, 1);
    s.cancel(&r);
    assert!(s.lock().queue.is_empty());
    assert_eq!(s.lock().outstanding, 0);
}

#[test]
fn a_worker_retires_at_its_quota_once_it_answered_everything() {
    let s = shared(ProcessConfig::new(Config::new().workers(1).max_tasks_per_worker(2)), 1);
    let rec = Arc::new(Recorder::default());
    let r = run(5, rec, Batching::Fixed(1));
    measured(&r, 1);
    s.submit(r);
    connect(&s, 0);
    assert_eq!(sent(&s, 0), 2, "no more than the quota is sent");
    assert!(!s.should_retire(&s.lock(), 0));
    let now = Instant::now();
    s.answered(&mut s.lock(), 0, 0..1, (now, 1), false, |_, _| {}).unwrap();
    assert!(!s.should_retire(&s.lock(), 0));
    s.answered(&mut s.lock(), 0, 1..2, (now, 1), false, |_, _| {}).unwrap();
    assert!(s.should_retire(&s.lock(), 0));
    assert!(
        s.answered(&mut s.lock(), 0, 7..8, (now, 1), false, |_, _| {}).is_err(),
        "an item never sent"
    );
}

#[test]
fn start_failures_are_counted_by_cause_and_a_kill_before_hello_is_not_one() {
    let s = shared(ProcessConfig::new(Config::new().workers(1).start_attempts(2)), 1);
    let rec = Arc::new(Recorder::default());
    s.submit(run(1, rec.clone(), Batching::Fixed(1)));
    let mut d = Deliveries::default();
    let killed = StartFailure::Died(Exit::Signal(libc::SIGKILL));
    for _ in 0..5 {
        assert_eq!(s.start_failed(&mut s.lock(), 0, &killed, &mut d), Duration::ZERO);
    }
    assert!(s.lock().start_error.is_none());
    let emfile = StartFailure::Os("Too many open files (os error 24)".into());
    let pause = s.start_failed(&mut s.lock(), 0, &emfile, &mut d);
    assert!(pause > Duration::ZERO && s.lock().start_error.is_none());
    let longer = s.start_failed(&mut s.lock(), 0, &emfile, &mut d);
    assert!(longer > pause, "back-off grows");
    let reason = s.lock().start_error.clone().unwrap();
    assert_eq!(reason, "cannot start a worker process: Too many open files (os error 24)");
    deliver(d, &s);
    assert_eq!(
        rec.got.lock().unwrap()[0].1.as_deref(),
        Some(&*format!("worker failed to start: {reason}"))
    );
    let causes = s.lock().counters.start_failures;
    assert_eq!((causes.killed, causes.os), (5, 2));
    s.started(&mut s.lock(), 0);
    assert!(s.lock().start_error.is_none(), "a worker that starts clears the refusal");
}

#[test]
fn a_worker_not_ready_in_time_says_that_its_initializer_counts() {
    let reason = StartFailure::NotReady(Duration::from_secs(30)).reason();
    assert!(reason.starts_with("the worker was not ready after 30s"), "{reason}");
    assert!(reason.contains("initializer included"), "{reason}");
}

#[test]
fn starts_failing_in_one_slot_refuse_nothing_until_every_slot_failed() {
    let s = shared(ProcessConfig::new(Config::new().workers(2).start_attempts(2)), 2);
    let mut d = Deliveries::default();
    let refused = StartFailure::Refused("no device for slot 1".into());
    for _ in 0..5 {
        s.start_failed(&mut s.lock(), 1, &refused, &mut d);
    }
    assert!(s.lock().start_error.is_none(), "slot 0 may still serve");
    s.start_failed(&mut s.lock(), 0, &refused, &mut d);
    assert!(s.lock().start_error.is_some(), "every slot's last start failed");
    s.started(&mut s.lock(), 0);
    assert!(s.lock().start_error.is_none());
    s.start_failed(&mut s.lock(), 1, &refused, &mut d);
    assert!(s.lock().start_error.is_none(), "slot 0 started again");
}

/// The batching policy's decisions, with the workers' measurements made up (no clock): what
/// each worker is sent of one job, and of the next.
fn sent_of(s: &Shared, w: usize, run: &Arc<Run>) -> Vec<usize> {
    let state = s.lock();
    state.slots[w]
        .sent
        .iter()
        .filter(|sl| Arc::ptr_eq(&sl.run, run))
        .map(|sl| sl.items.len())
        .collect()
}

/// Answers every item worker `w` holds now, each measured at `ns`, refilling it after each
/// answer as its supervisor does.
fn answer_all(s: &Shared, w: usize, ns: u64) {
    let now = Instant::now();
    let held = sent(s, w);
    for _ in 0..held {
        let mut state = s.lock();
        let seq = state.slots[w].conn.as_ref().unwrap().expect_seq;
        s.answered(&mut state, w, seq..seq + 1, (now, ns), false, |_, _| {}).unwrap();
        let _ = s.pump(&mut state, w);
    }
}

#[test]
fn each_job_learns_its_own_batch_size_so_a_slow_job_after_a_fast_one_spreads() {
    let s = shared(ProcessConfig::new(Config::new().workers(2)), 2);
    connect(&s, 0);
    connect(&s, 1);
    // A map of 100,000 no-ops that the workers measure at 50 ns each.
    let fast = run(100_000, NullSink, Batching::Adaptive(4096));
    s.submit(fast.clone());
    assert_eq!(sent_of(&s, 0, &fast), [1, 1], "an unmeasured job goes one item at a time");
    assert_eq!(sent_of(&s, 1, &fast), [1, 1]);
    while !s.lock().queue.is_empty() || s.lock().slots.iter().any(|sl| !sl.sent.is_empty()) {
        answer_all(&s, 0, 50);
        answer_all(&s, 1, 50);
    }
    assert_eq!(fast.job.pace.batch_target(), 4000, "200 µs of 50 ns items");

    // Then a CPU-bound map on the same pool: 100 items of 1 ms, as a fresh pool would.
    let slow = run(100, NullSink, Batching::Adaptive(13));
    s.submit(slow.clone());
    assert_eq!(sent_of(&s, 0, &slow), [1, 1], "one by one, in_flight at a time");
    assert_eq!(sent_of(&s, 1, &slow), [1, 1], "both workers get a share");
    answer_all(&s, 0, 1_000_000);
    assert_eq!(slow.job.pace.batch_target(), 1);
    assert_eq!(sent_of(&s, 0, &slow), [1, 1], "measured slow: still one by one");

    // A job of 10 µs items grows from one item per batch to 20 as soon as one is measured.
    let s = shared(ProcessConfig::new(Config::new().workers(1)), 1);
    connect(&s, 0);
    let medium = run(1000, NullSink, Batching::Adaptive(1000));
    s.submit(medium.clone());
    assert_eq!(sent_of(&s, 0, &medium), [1, 1]);
    answer_all(&s, 0, 10_000);
    assert_eq!(sent_of(&s, 0, &medium), [20, 20]);
}

#[test]
fn a_worker_whose_item_runs_far_past_its_estimate_takes_no_more_work() {
    // One item measured at 1 ms has run on worker 0 for `ago` when a map of 10 arrives:
    // what each worker is sent of the map.
    let map_after = |ago: Duration| {
        let s = shared(ProcessConfig::new(Config::new().workers(2)), 2);
        connect(&s, 0);
        connect(&s, 1);
        let long = run(1, NullSink, Batching::Adaptive(1));
        measured(&long, 1_000_000);
        s.submit(long.clone());
        assert_eq!(sent_of(&s, 0, &long), [1]);
        s.lock().slots[0].head_since = Some(Instant::now() - ago);
        let map = run(10, NullSink, Batching::Adaptive(10));
        s.submit(map.clone());
        (sent_of(&s, 0, &map), sent_of(&s, 1, &map))
    };
    // Twice its estimate: worker 0 takes a batch behind it, as it has room.
    assert_eq!(map_after(Duration::from_millis(2)), (vec![1], vec![1, 1]));
    // Past four times its estimate and 10 ms: nothing, and the map waits for worker 1.
    assert_eq!(map_after(Duration::from_millis(50)), (vec![], vec![1, 1]));
}

/// Two items measured at 1 ms run, one on each worker, with a map of 10 in batches of
/// `batch` spread behind them; worker 1 then answers everything it holds and is idle. Returns
/// the pool, worker 0's fake process and the map.
fn one_worker_idle_the_other_running_long(batch: usize) -> (Shared, Arc<FakeProcess>, Arc<Run>) {
    let s = shared(ProcessConfig::new(Config::new().workers(2)).in_flight(16), 2);
    let fake = connect(&s, 0);
    connect(&s, 1);
    let long = run(2, NullSink, Batching::Fixed(1));
    measured(&long, 1_000_000);
    s.submit(long);
    let map = run(10, NullSink, Batching::Fixed(batch));
    s.submit(map.clone());
    assert!(!sent_of(&s, 0, &map).is_empty(), "part of the map waits behind the long item");
    while sent(&s, 1) > 0 {
        answer_all(&s, 1, 1_000);
    }
    assert!(s.lock().queue.is_empty());
    // Worker 0 runs its first item.
    fake.set(1, 0);
    (s, fake, map)
}

/// What worker `w` holds: (items, recalled) per slice.
fn held(s: &Shared, w: usize) -> Vec<(usize, bool)> {
    s.lock().slots[w].sent.iter().map(|sl| (sl.items.len(), sl.recalled)).collect()
}

#[test]
fn an_idle_worker_takes_back_what_waits_behind_an_overdue_item() {
    let (s, fake, map) = one_worker_idle_the_other_running_long(2);
    let behind = sent_of(&s, 0, &map);
    let since = s.lock().slots[0].head_since.unwrap();
    // Five times the estimate but under the floor: not overdue yet; look again at 10 ms.
    let (flushes, due) = s.relieve(&mut s.lock(), 1, since + Duration::from_millis(5));
    assert!(flushes.is_empty());
    assert_eq!(due, Some(since + Duration::from_millis(10)));
    assert!(fake.recalled.lock().unwrap().is_empty());
    // Overdue: what waits behind it goes to worker 1.
    let (flushes, due) = s.relieve(&mut s.lock(), 1, since + Duration::from_millis(50));
    assert_eq!((flushes.len(), due), (1, None));
    assert_eq!(sent_of(&s, 1, &map), behind);
    let next_seq = s.lock().slots[0].conn.as_ref().unwrap().next_seq;
    assert_eq!(*fake.recalled.lock().unwrap(), [next_seq]);
    let mut expected = vec![(1, false)];
    expected.extend(behind.iter().map(|&n| (n, true)));
    assert_eq!(held(&s, 0), expected, "recalled slices wait for the worker's answers");
    // The long item ends; the worker says it skipped the rest: nothing is delivered twice.
    let skipped: u64 = behind.iter().sum::<usize>() as u64;
    let mut state = s.lock();
    s.answered(&mut state, 0, 0..1, (Instant::now(), 1), false, |_, _| {}).unwrap();
    let mut delivered = 0;
    s.answered(&mut state, 0, 1..1 + skipped, (Instant::now(), 0), true, |_, _| delivered += 1)
        .unwrap();
    assert_eq!(delivered, 0);
    assert!(state.slots[0].sent.is_empty() && state.queue.is_empty());
    drop(state);
    assert_eq!(sent_of(&s, 1, &map), behind, "worker 1 still holds them");
}

#[test]
fn a_batch_the_worker_started_is_not_recalled_and_one_it_skipped_unasked_runs_elsewhere() {
    let (s, fake, map) = one_worker_idle_the_other_running_long(1);
    let behind = sent_of(&s, 0, &map);
    assert!(behind.len() >= 2, "{behind:?}");
    // The long item ended meanwhile and the first batch behind it started.
    fake.set(2, 1);
    let since = s.lock().slots[0].head_since.unwrap();
    let _ = s.relieve(&mut s.lock(), 1, since + Duration::from_millis(50));
    let mut expected = vec![(1, false), (behind[0], false)];
    expected.extend(behind[1..].iter().map(|&n| (n, true)));
    assert_eq!(held(&s, 0), expected);
    assert_eq!(sent_of(&s, 1, &map), behind[1..]);
    // The worker answers the long item, then says it skipped the started batch (it saw the
    // recall as the pool saw the batch start): that batch is queued again, not failed.
    let mut state = s.lock();
    s.answered(&mut state, 0, 0..1, (Instant::now(), 1), false, |_, _| {}).unwrap();
    let n = behind[0] as u64;
    s.answered(&mut state, 0, 1..1 + n, (Instant::now(), 0), true, |_, _| panic!()).unwrap();
    let queued: usize = state.queue.iter().map(|sl| sl.items.len()).sum();
    assert_eq!(queued, behind[0]);
    // An answer with a value for a recalled item breaks the protocol.
    let seq = 1 + n;
    let err = s.answered(&mut state, 0, seq..seq + 1, (Instant::now(), 1), false, |_, _| {});
    assert!(err.unwrap_err().contains("recalled"));
}

#[test]
fn a_task_its_worker_never_starts_goes_to_an_idle_worker_once_overdue() {
    // Worker 0 is sent one task measured at 1 ms and does not start it (stopped, say);
    // worker 1 is idle.
    let s = shared(ProcessConfig::new(Config::new().workers(2)), 2);
    let fake = connect(&s, 0);
    fake.set(0, 0);
    let task = run(1, NullSink, Batching::Fixed(1));
    measured(&task, 1_000_000);
    s.submit(task.clone());
    connect(&s, 1);
    assert_eq!((sent_of(&s, 0, &task), sent_of(&s, 1, &task)), (vec![1], vec![]));
    let since = s.lock().slots[0].head_since.unwrap();
    // Not overdue yet: worker 1's supervisor looks again then.
    let (flushes, due) = s.relieve(&mut s.lock(), 1, since + Duration::from_millis(5));
    assert!(flushes.is_empty());
    assert_eq!(due, Some(since + OVERDUE_FLOOR));
    assert!(fake.recalled.lock().unwrap().is_empty());
    // Overdue and still not started: it goes to worker 1, and worker 0 skips it if it wakes.
    let (flushes, due) = s.relieve(&mut s.lock(), 1, since + Duration::from_millis(50));
    assert_eq!((flushes.len(), due), (1, None));
    assert_eq!(sent_of(&s, 1, &task), [1]);
    assert_eq!(held(&s, 0), [(1, true)]);
    assert_eq!(*fake.recalled.lock().unwrap(), [1]);
    let mut state = s.lock();
    s.answered(&mut state, 0, 0..1, (Instant::now(), 0), true, |_, _| panic!()).unwrap();
    assert!(state.slots[0].sent.is_empty() && state.queue.is_empty());
}

#[test]
fn a_head_that_runs_or_whose_batch_began_stays_with_its_worker() {
    let s = shared(ProcessConfig::new(Config::new().workers(2)), 2);
    let fake = connect(&s, 0);
    let map = run(2, NullSink, Batching::Fixed(2));
    measured(&map, 1_000_000);
    s.submit(map.clone());
    connect(&s, 1);
    assert_eq!((sent_of(&s, 0, &map), sent(&s, 1)), (vec![2], 0), "one batch; worker 1 idle");
    assert!(s.lock().queue.is_empty());
    // It runs: an idle worker does not even look again for it.
    fake.set(1, 0);
    let since = s.lock().slots[0].head_since.unwrap();
    assert_eq!(s.relieve(&mut s.lock(), 1, since + Duration::from_millis(5)).1, None);
    // Its first item is answered and the worker is between items: the batch began, so the
    // rest stays, however long the worker takes to go on.
    fake.set(1, 1);
    {
        let mut state = s.lock();
        s.answered(&mut state, 0, 0..1, (Instant::now(), 1), false, |_, _| {}).unwrap();
    }
    let since = s.lock().slots[0].head_since.unwrap();
    let (flushes, due) = s.relieve(&mut s.lock(), 1, since + Duration::from_secs(1));
    assert!(flushes.is_empty());
    assert_eq!(due, None);
    assert_eq!(held(&s, 0), [(1, false)]);
    assert!(fake.recalled.lock().unwrap().is_empty());
}

#[test]
fn one_answer_for_many_items_spans_slices_and_runs_in_order() {
    let s = shared(ProcessConfig::new(Config::new().workers(1)).in_flight(8), 1);
    let (first, second) =
        (run(3, NullSink, Batching::Fixed(2)), run(3, NullSink, Batching::Fixed(2)));
    s.submit(first.clone());
    s.submit(second.clone());
    connect(&s, 0);
    assert_eq!(sent(&s, 0), 6);
    let mut seen = Vec::new();
    s.answered(&mut s.lock(), 0, 0..5, (Instant::now(), 50), false, |run, items| {
        seen.push((Arc::ptr_eq(run, &first), items));
    })
    .unwrap();
    // The two jobs take turns, batch by batch.
    assert_eq!(seen, [(true, 0..2), (false, 0..2), (true, 2..3)]);
    assert_eq!(first.job.pace.item_ns(), 10, "the pace learns the mean of the group");
    assert_eq!(sent(&s, 0), 1);
    assert_eq!(s.lock().slots[0].conn.as_ref().unwrap().expect_seq, 5);
    let err =
        s.answered(&mut s.lock(), 0, 5..7, (Instant::now(), 1), false, |_, _| {}).unwrap_err();
    assert!(err.contains("never sent"), "{err}");
}

/// A request pipe that keeps what is written to it, and counts the writes; `.2` makes it
/// stand for a ring.
#[derive(Default)]
struct Recording(Mutex<Vec<u8>>, AtomicUsize, bool);

impl RequestPipe for Recording {
    fn write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(bytes.len())
    }

    fn on_ring(&self) -> bool {
        self.2
    }
}

impl Recording {
    /// The batch frames written so far: each one's first sequence number, job, flags and
    /// inputs.
    fn batches(&self) -> Vec<(u64, i64, u8, Vec<Vec<u8>>)> {
        batches_in(&self.0.lock().unwrap())
    }
}

/// The batch frames of `bytes`, as [`Recording::batches`] lists them.
fn batches_in(bytes: &[u8]) -> Vec<(u64, i64, u8, Vec<Vec<u8>>)> {
    let mut reader = crate::wire::FrameReader::new(1 << 20);
    reader.push(bytes);
    let mut batches = Vec::new();
    while let Some((kind, range)) = reader.next_frame().unwrap() {
        assert_eq!(kind, crate::wire::Kind::Batch);
        let mut body = crate::wire::Body::new(reader.bytes(range));
        let seq = body.u64("seq").unwrap();
        let entry = body.i64("entry").unwrap();
        let flags = body.u8("flags").unwrap();
        body.bytes("state").unwrap();
        let count = body.u32("count").unwrap();
        let inputs = (0..count).map(|_| body.bytes("input").unwrap().to_vec()).collect();
        body.finish("inputs").unwrap();
        batches.push((seq, entry, flags, inputs));
    }
    batches
}

/// Puts a ready worker whose requests are recorded in slot `w`.
fn connect_recorded(shared: &Shared, w: usize) -> Arc<Recording> {
    let pipe = Arc::new(Recording::default());
    attach(shared, w, Arc::new(FakeProcess::default()), pipe.clone());
    pipe
}

/// A single task of `job` whose input is `[input]`, as `submit` makes it (its function's
/// tasks share it, and its pace).
fn single(job: &Arc<Paced>, input: u8) -> Arc<Run> {
    let mut b = RunBuilder::new(job.clone());
    b.push_encoded(&[input]);
    let sink = Arc::new(Recorder { cancellable: true, ..Recorder::default() });
    Arc::new(b.finish(sink, None, Batching::Fixed(1)))
}

/// Answers worker `w`'s head item and refills it, as its supervisor does.
fn answer_one(s: &Shared, w: usize) {
    let mut state = s.lock();
    let seq = state.slots[w].conn.as_ref().unwrap().expect_seq;
    s.answered(&mut state, w, seq..seq + 1, (Instant::now(), 50), false, |_, _| {}).unwrap();
    let flush = s.pump(&mut state, w);
    drop(state);
    s.flush(flush);
}

#[test]
fn fast_single_tasks_that_arrive_while_every_worker_is_busy_travel_together() {
    let s = shared(ProcessConfig::new(Config::new().workers(2)), 2);
    let pipes = [connect_recorded(&s, 0), connect_recorded(&s, 1)];
    let (fast, other) = (
        Paced::new(Shipped { entry: 7, state: Vec::new(), kept: Default::default() }),
        Paced::new(Shipped { entry: 8, state: Vec::new(), kept: Default::default() }),
    );
    (0..200).for_each(|_| fast.pace.record(50));
    (0..200).for_each(|_| other.pace.record(50));
    // An idle worker takes a task at once, alone: one for each.
    for i in 0..2 {
        s.submit(single(&fast, i));
    }
    assert_eq!(pipes[0].batches(), [(0, 7, CANCELLABLE, vec![vec![0]])]);
    assert_eq!(pipes[1].batches(), [(0, 7, CANCELLABLE, vec![vec![1]])]);
    // Both busy: the next ones wait, another function's among them.
    for i in 2..6 {
        s.submit(single(&fast, i));
    }
    s.submit(single(&other, 6));
    for i in 7..9 {
        s.submit(single(&fast, i));
    }
    assert_eq!(s.lock().queue.len(), 7, "nothing written while the workers are busy");
    assert_eq!(pipes[0].batches().len(), 1);
    // The first answer sends them all, in order: a frame per run of one function, numbered
    // on, no result to be held back by a longer task.
    answer_one(&s, 0);
    let each = CANCELLABLE | FLUSH_SOON;
    let inputs = |r: std::ops::Range<u8>| r.map(|i| vec![i]).collect::<Vec<_>>();
    assert_eq!(
        pipes[0].batches()[1..],
        [(1, 7, each, inputs(2..6)), (5, 8, CANCELLABLE, inputs(6..7)), (6, 7, each, inputs(7..9))]
    );
    assert!(s.lock().queue.is_empty());
    assert_eq!(sent(&s, 0), 7);
    // One answer covers items of several runs, in order.
    let mut seen = Vec::new();
    s.answered(&mut s.lock(), 0, 1..8, (Instant::now(), 350), false, |run, items| {
        seen.push((run.framed(0..1)[4], items));
    })
    .unwrap();
    assert_eq!(seen, (2..9).map(|i| (i, 0..1)).collect::<Vec<_>>());
}

#[test]
fn slow_single_tasks_go_at_once_one_per_frame_while_a_worker_has_room() {
    let s = shared(ProcessConfig::new(Config::new().workers(2)), 2);
    let pipes = [connect_recorded(&s, 0), connect_recorded(&s, 1)];
    // Not measured yet: taken to be slow, as a first task of a function is.
    let job = Paced::new(Shipped { entry: 7, state: Vec::new(), kept: Default::default() });
    for i in 0..6 {
        s.submit(single(&job, i));
    }
    // Two batches' worth each (`in_flight` 2), then the queue.
    let firsts = |w: usize| pipes[w].batches().iter().map(|b| b.3.clone()).collect::<Vec<_>>();
    assert_eq!(firsts(0), [vec![vec![0]], vec![vec![2]]]);
    assert_eq!(firsts(1), [vec![vec![1]], vec![vec![3]]]);
    assert_eq!(s.lock().queue.len(), 2);
}

#[test]
fn a_cancelled_single_task_waiting_to_travel_is_dropped_and_the_rest_go() {
    let s = shared(ProcessConfig::new(Config::new().workers(1)), 1);
    let pipe = connect_recorded(&s, 0);
    let job = Paced::new(Shipped { entry: 7, state: Vec::new(), kept: Default::default() });
    (0..200).for_each(|_| job.pace.record(50));
    let runs: Vec<_> = (0..4).map(|i| single(&job, i)).collect();
    runs.iter().for_each(|r| s.submit(r.clone()));
    assert_eq!(s.lock().queue.len(), 3);
    s.cancel(&*runs[2]);
    answer_one(&s, 0);
    let sent_inputs: Vec<_> = pipe.batches().into_iter().flat_map(|b| b.3).collect();
    assert_eq!(sent_inputs, [vec![0], vec![1], vec![3]]);
    assert_eq!(s.lock().outstanding, 3, "the cancelled one is done");
}

/// A job of function 7 whose single tasks were measured fast (50 ns each).
fn fast_job() -> Arc<Paced> {
    let job = Paced::new(Shipped { entry: 7, state: Vec::new(), kept: Default::default() });
    (0..200).for_each(|_| job.pace.record(50));
    job
}

/// A pool of one ready worker, whose requests are recorded.
fn one_worker() -> (Shared, Arc<Recording>) {
    let s = shared(ProcessConfig::new(Config::new().workers(1)), 1);
    let pipe = connect_recorded(&s, 0);
    (s, pipe)
}

/// Submits fast single tasks of `job` with inputs `inputs` from another thread while this
/// one holds the pool's lock (`state`, with or without the inbox's admission at its release),
/// and returns the lock once they all returned: a caller never waits for the lock with such
/// a task.
fn submit_beside<G>(s: &Shared, state: G, job: &Arc<Paced>, inputs: Range<u8>) -> G {
    let (done, returned) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            inputs.for_each(|i| s.submit(single(job, i)));
            done.send(()).unwrap();
        });
        let returned = returned.recv_timeout(Duration::from_secs(60));
        assert!(returned.is_ok(), "a fast task waited for the pool's lock");
        state
    })
}

#[test]
fn fast_tasks_submitted_while_the_lock_is_held_wait_in_the_inbox_and_queue_in_order_at_release() {
    let s = shared(ProcessConfig::new(Config::new().workers(2)), 2);
    let pipes = [connect_recorded(&s, 0), connect_recorded(&s, 1)];
    let job = fast_job();
    (0..2).for_each(|i| s.submit(single(&job, i)));
    let state = submit_beside(&s, s.lock(), &job, 2..6);
    assert!(state.queue.is_empty(), "left in the inbox while the lock was held");
    assert_eq!(state.outstanding, 2);
    drop(state);
    let state = s.lock();
    assert_eq!(state.queue.len(), 4, "taken in when the lock was released");
    assert_eq!(state.outstanding, 6);
    drop(state);
    assert_eq!(pipes[0].batches().len(), 1, "both workers busy: nothing sent");
    answer_one(&s, 0);
    let each = CANCELLABLE | FLUSH_SOON;
    assert_eq!(pipes[0].batches()[1..], [(1, 7, each, (2..6).map(|i| vec![i]).collect())]);
}

#[test]
fn a_task_left_while_the_lock_was_held_goes_to_an_idle_worker_at_release() {
    let (s, pipe) = one_worker();
    let job = fast_job();
    let state = submit_beside(&s, s.lock(), &job, 0..1);
    assert!(pipe.batches().is_empty());
    drop(state);
    assert_eq!(pipe.batches(), [(0, 7, CANCELLABLE, vec![vec![0]])]);
}

#[test]
fn a_waiter_on_the_condition_variable_takes_the_inbox_in_before_it_sleeps() {
    let (s, _pipe) = one_worker();
    let job = fast_job();
    s.submit(single(&job, 0));
    let state = submit_beside(&s, s.lock(), &job, 1..3);
    // Nobody signals: it returns because the inbox held tasks.
    let state = s.wait(state, None);
    assert_eq!(state.queue.len(), 2);
    assert_eq!(state.outstanding, 3);
}

#[test]
fn no_task_is_stranded_in_the_inbox_by_callers_racing_with_lock_holders() {
    const CALLERS: usize = 4;
    const EACH: usize = 2_000;
    let (s, _pipe) = one_worker();
    let job = fast_job();
    let callers_done = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..CALLERS {
            scope.spawn(|| {
                (0..EACH).for_each(|i| s.submit(single(&job, (i % 256) as u8)));
                callers_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        // A holder that takes and releases the lock as a supervisor does, until the callers
        // are done.
        scope.spawn(|| {
            while callers_done.load(Ordering::SeqCst) < CALLERS {
                let state = s.lock();
                std::thread::yield_now();
                drop(state);
            }
        });
    });
    // Every task was taken in by a release before this lock.
    let state = s.lock();
    assert_eq!(state.outstanding, CALLERS * EACH);
    let sent: usize = state.slots[0].sent.iter().map(|s| s.items.len()).sum();
    assert_eq!(state.queue.len() + sent, CALLERS * EACH);
}

#[test]
fn closing_queues_first_what_callers_left_before_so_it_runs() {
    let (s, pipe) = one_worker();
    let job = fast_job();
    // Released without looking at the inbox: the two tasks are still there when the pool is
    // closed, their `submit` long returned.
    let raw = submit_beside(&s, s.lock_state(), &job, 0..2);
    drop(raw);
    let mut state = s.lock_to_close();
    state.closed = true;
    assert_eq!(state.outstanding, 2, "accepted, not refused");
    drop(state);
    let both = vec![vec![0], vec![1]];
    assert_eq!(pipe.batches(), [(0, 7, CANCELLABLE | FLUSH_SOON, both)], "sent to the idle worker");
    assert!(s.lock().queue.is_empty());
}

#[test]
fn tasks_of_several_functions_left_in_the_inbox_keep_their_order_and_travel_by_function() {
    let (s, pipe) = one_worker();
    let fast = fast_job();
    let other = Paced::new(Shipped { entry: 8, state: Vec::new(), kept: Default::default() });
    (0..200).for_each(|_| other.pace.record(50));
    s.submit(single(&fast, 0));
    // The worker is busy: left in the inbox while the lock is held, another function's task
    // among them.
    let state = submit_beside(&s, s.lock(), &fast, 1..3);
    let state = submit_beside(&s, state, &other, 3..4);
    let state = submit_beside(&s, state, &fast, 4..6);
    assert!(state.queue.is_empty(), "left in the inbox while the lock was held");
    drop(state);
    assert_eq!(s.lock().queue.len(), 5, "taken in when the lock was released");
    answer_one(&s, 0);
    let each = CANCELLABLE | FLUSH_SOON;
    let inputs = |r: Range<u8>| r.map(|i| vec![i]).collect::<Vec<_>>();
    assert_eq!(
        pipe.batches()[1..],
        [(1, 7, each, inputs(1..3)), (3, 8, CANCELLABLE, inputs(3..4)), (4, 7, each, inputs(4..6))]
    );
}

#[test]
fn a_task_cancelled_while_in_the_inbox_never_goes_out() {
    let (s, pipe) = one_worker();
    let job = fast_job();
    let mut b = RunBuilder::new(job.clone());
    b.push_encoded(&[0]);
    let sink = Arc::new(Recorder { cancellable: true, ..Recorder::default() });
    let run: Arc<Run> = Arc::new(b.finish(sink.clone(), None, Batching::Fixed(1)));
    // Left in the inbox: the lock was released without looking at it.
    let raw = s.lock_state();
    std::thread::scope(|scope| scope.spawn(|| s.submit(run.clone())).join().unwrap());
    drop(raw);
    // Cancelled as a handle is: settled first, then the pool told.
    sink.settled.store(true, Ordering::SeqCst);
    s.cancel(&*run);
    assert!(pipe.batches().is_empty(), "the idle worker was sent a cancelled task");
    let state = s.lock();
    assert!(state.queue.is_empty());
    assert_eq!(state.outstanding, 0, "it is done");
}

/// A pipe that takes at most the bytes it was given room for, then is full: a worker that
/// reads its requests as it gets to them.
#[derive(Default)]
struct Narrow {
    written: Mutex<Vec<u8>>,
    room: AtomicUsize,
    ring: bool,
}

impl RequestPipe for Narrow {
    fn write(&self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = bytes.len().min(self.room.load(Ordering::SeqCst));
        self.room.fetch_sub(n, Ordering::SeqCst);
        self.written.lock().unwrap().extend_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn on_ring(&self) -> bool {
        self.ring
    }
}

/// A worker that reads each frame only as the next one is queued behind it (a job whose
/// state makes every frame larger than the ring) never empties its outbox: before, the
/// outbox kept every frame it ever sent until it was written whole, which never came, and a
/// `map` of such a job held a copy of its state per batch (gigabytes, until the machine ran
/// out of memory).
#[test]
fn an_outbox_that_never_empties_does_not_keep_what_it_wrote() {
    for ring in [false, true] {
        let job =
            Paced::new(Shipped { entry: 7, state: vec![3; 50_000], kept: Default::default() });
        let mut b = RunBuilder::new(job);
        let big: Vec<u8> = (0..bulk::APART * 3).map(|i| (i % 251) as u8).collect();
        for i in 0..200 {
            b.push_encoded(if i % 2 == 0 { &[1, 2, 3][..] } else { &big });
        }
        let run: Arc<Run> = Arc::new(b.finish(NullSink, None, Batching::Fixed(1)));
        let push = |outlet: &crate::outlet::Outlet, i: usize| {
            outlet.lock().push_batch(i as u64, &run, 0, i..i + 1);
        };
        // Each frame's length in the stream, its large input included.
        let sizes: Vec<usize> = (0..200)
            .map(|i| {
                let pipe = Arc::new(Narrow {
                    ring,
                    room: AtomicUsize::new(usize::MAX),
                    ..Narrow::default()
                });
                let outlet = crate::outlet::Outlet::new(pipe.clone());
                push(&outlet, i);
                assert!(!outlet.flush());
                pipe.written.lock().unwrap().len()
            })
            .collect();
        let largest = *sizes.iter().max().unwrap();
        let pipe = Arc::new(Narrow { ring, ..Narrow::default() });
        let outlet = crate::outlet::Outlet::new(pipe.clone());
        for i in 0..200 {
            push(&outlet, i);
            // The worker reads the frame before this one, now that this one is behind it.
            pipe.room.store(if i == 0 { 0 } else { sizes[i - 1] }, Ordering::SeqCst);
            assert!(outlet.flush(), "frame {i} is left");
            let held = outlet.held();
            assert!(held <= 3 * largest, "ring {ring}: {held} bytes held after {} frames", i + 1);
        }
        pipe.room.store(usize::MAX, Ordering::SeqCst);
        assert!(!outlet.flush(), "all written");
        let batches = batches_in(&pipe.written.lock().unwrap());
        assert_eq!(batches.len(), 200);
        for (i, (seq, entry, _, inputs)) in batches.into_iter().enumerate() {
            assert_eq!((seq, entry), (i as u64, 7));
            assert_eq!(inputs, [run.framed(i..i + 1)[4..].to_vec()]);
        }
    }
}

/// An input of 4 KiB goes to a ring from the run it was encoded in, after its frame's head
/// (two writes), and to a pipe copied into the outbox with its head (one write); the worker
/// reads the same frame either way. A smaller one is copied on a ring too.
#[test]
fn an_input_from_4_kib_is_written_to_a_ring_from_its_run_and_copied_for_a_pipe() {
    for (on_ring, len, writes) in [(true, bulk::APART, 2), (false, bulk::APART, 1), (true, 100, 1)]
    {
        let pipe = Arc::new(Recording(Mutex::default(), AtomicUsize::new(0), on_ring));
        let outlet = crate::outlet::Outlet::new(pipe.clone());
        let input: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut b = RunBuilder::new(fast_job());
        b.push_encoded(&input);
        let run: Arc<Run> = Arc::new(b.finish(NullSink, None, Batching::Fixed(1)));
        outlet.lock().push_batch(5, &run, 0, 0..1);
        outlet.flush();
        assert_eq!(pipe.1.load(Ordering::SeqCst), writes, "ring {on_ring}, {len} bytes");
        assert_eq!(pipe.batches(), [(5, 7, 0, vec![input])]);
    }
}

#[test]
fn deliveries_that_reuse_a_spare_hand_over_every_outcome_and_keep_the_room_up_to_a_limit() {
    use crate::deliveries::Spare;

    let recorder = Arc::new(Recorder::default());
    let runs: Vec<_> = (0..300).map(|_| run(1, recorder.clone(), Batching::Fixed(1))).collect();
    let tally = Tally::default();
    let mut spare = Spare::default();
    for round in 0..3 {
        let mut deliveries = Deliveries::reusing(&mut spare);
        assert!(spare.room() <= 1, "the room is lent to the deliveries (one group fits inline)");
        for r in &runs {
            deliveries.add_failure(r, 0, TaskError::ShutDown);
        }
        assert_eq!(deliveries.deliver_keeping(&|_| &[], &tally, &mut spare), 300);
        assert!(spare.room() >= 300, "round {round}: room for 300 groups kept");
        assert_eq!(recorder.got.lock().unwrap().len(), 300 * (round + 1));
    }
    assert!(recorder.got.lock().unwrap().iter().all(|(i, e)| *i == 0 && e.is_some()));

    // A list grown past the limit is let go.
    let many: Vec<_> = (0..1100).map(|_| run(1, recorder.clone(), Batching::Fixed(1))).collect();
    let mut deliveries = Deliveries::reusing(&mut spare);
    for r in &many {
        deliveries.add_failure(r, 0, TaskError::ShutDown);
    }
    assert_eq!(deliveries.deliver_keeping(&|_| &[], &tally, &mut spare), 1100);
    assert!(spare.room() <= 1, "room for {} groups kept", spare.room());
    assert_eq!(recorder.got.lock().unwrap().len(), 2000);
}

/// The inputs of the batch frames written to `pipe` since the first `skip`, with their entry
/// points (`0` for [`run`]'s items).
fn sent_inputs(pipe: &Recording, skip: usize) -> Vec<(i64, Vec<Vec<u8>>)> {
    pipe.batches().into_iter().skip(skip).map(|(_, entry, _, inputs)| (entry, inputs)).collect()
}

#[test]
fn a_single_task_queued_behind_a_long_run_waits_for_one_batch_of_it_not_all() {
    let (s, pipe) = one_worker();
    let long = run(100, NullSink, Batching::Fixed(1));
    measured(&long, 1_000_000);
    s.submit(long);
    let flushes = s.pump_all(&mut s.lock());
    s.flush(flushes);
    // Two slow items in hand (`in_flight` 2), the rest queued; then a task of another job.
    assert_eq!(sent_inputs(&pipe, 0), [(0, vec![vec![0]]), (0, vec![vec![1]])]);
    s.submit(single(&fast_job(), 200));
    answer_one(&s, 0);
    answer_one(&s, 0);
    // The long run's next batch went first, as it was first in line; then the task (and,
    // room left, the long run's next).
    assert_eq!(sent_inputs(&pipe, 2)[..2], [(0, vec![vec![2]]), (7, vec![vec![200]])]);
}

#[test]
fn runs_of_two_jobs_queued_together_take_turns_batch_by_batch() {
    let s = shared(ProcessConfig::new(Config::new().workers(1)).in_flight(1), 1);
    let (first, second) =
        (run(3, NullSink, Batching::Fixed(1)), run(3, NullSink, Batching::Fixed(1)));
    measured(&first, 1_000_000);
    measured(&second, 1_000_000);
    // Both queued before the worker is ready.
    s.submit(first);
    s.submit(second);
    let pipe = connect_recorded(&s, 0);
    let flushes = s.pump_all(&mut s.lock());
    s.flush(flushes);
    (0..5).for_each(|_| answer_one(&s, 0));
    let inputs: Vec<_> = sent_inputs(&pipe, 0).into_iter().map(|(_, inputs)| inputs).collect();
    // Items 0, 0, 1, 1, 2, 2: each job's in order, the jobs in turn.
    let turns = [0, 0, 1, 1, 2, 2].map(|i| vec![vec![i]]);
    assert_eq!(inputs, turns);
    assert!(s.lock().queue.is_empty());
}

#[test]
fn an_imaps_runs_of_one_item_wait_in_its_own_line_not_with_single_tasks() {
    let (s, pipe) = one_worker();
    // An imap of slow items sends one item per run, batched adaptively, a window of them.
    let imap = Paced::new(Shipped { entry: 5, state: Vec::new(), kept: Default::default() });
    (0..200).for_each(|_| imap.pace.record(1_000_000));
    for i in 0..10 {
        let mut b = RunBuilder::new(imap.clone());
        b.push_encoded(&[i]);
        s.submit(Arc::new(b.finish(NullSink, None, Batching::Adaptive(1))));
    }
    assert_eq!(sent_inputs(&pipe, 0), [(5, vec![vec![0]]), (5, vec![vec![1]])]);
    s.submit(single(&fast_job(), 200));
    answer_one(&s, 0);
    answer_one(&s, 0);
    // The task goes after one more of the imap's items, not after the eight waiting.
    assert_eq!(sent_inputs(&pipe, 2)[..2], [(5, vec![vec![2]]), (7, vec![vec![200]])]);
}

#[test]
fn a_task_notes_the_worker_it_was_sent_to_where_its_caller_watches() {
    let s = shared(ProcessConfig::new(Config::new().workers(2)), 2);
    let first = run(1, NullSink, Batching::Adaptive(1));
    s.submit(first.clone());
    assert_eq!(first.worker(), None, "queued: no worker holds it");
    connect(&s, 0);
    assert_eq!(first.worker(), Some(0));
    connect(&s, 1);
    let second = run(1, NullSink, Batching::Adaptive(1));
    s.submit(second.clone());
    assert_eq!(second.worker(), Some(1), "the idle worker took it");
}

/// Two workers with status pages, whose requests are recorded; fast single tasks 0 and 1
/// went one to each, 2 to 5 waited and went to worker 0 in one frame when it answered 0,
/// and worker 0 now runs task 2, which waits for something (another task, perhaps one of
/// those behind it in its frame). Returns the pool, worker 0's process and the pipes.
fn a_frame_of_single_tasks_behind_one_that_runs_long()
-> (Shared, Arc<FakeProcess>, [Arc<Recording>; 2]) {
    let s = shared(ProcessConfig::new(Config::new().workers(2)), 2);
    let fakes = [Arc::new(FakeProcess::default()), Arc::new(FakeProcess::default())];
    let pipes = [Arc::new(Recording::default()), Arc::new(Recording::default())];
    for w in 0..2 {
        fakes[w].set(0, 0);
        attach(&s, w, fakes[w].clone(), pipes[w].clone());
    }
    let job = Paced::new(Shipped { entry: 7, state: Vec::new(), kept: Default::default() });
    (0..200).for_each(|_| job.pace.record(50));
    for i in 0..6 {
        s.submit(single(&job, i));
    }
    answer_one(&s, 0);
    let each = CANCELLABLE | FLUSH_SOON;
    let inputs = |r: std::ops::Range<u8>| r.map(|i| vec![i]).collect::<Vec<_>>();
    assert_eq!(pipes[0].batches()[1..], [(1, 7, each, inputs(2..6))]);
    fakes[0].set(2, 1);
    let [fake, _] = fakes;
    (s, fake, pipes)
}

#[test]
fn tasks_behind_a_long_one_in_its_frame_go_to_an_idle_worker() {
    let (s, fake, pipes) = a_frame_of_single_tasks_behind_one_that_runs_long();
    answer_one(&s, 1);
    assert_eq!(sent(&s, 1), 0, "worker 1 is idle");
    let since = s.lock().slots[0].head_since.unwrap();
    let (flushes, due) = s.relieve(&mut s.lock(), 1, since + Duration::from_millis(5));
    assert!(flushes.is_empty());
    assert_eq!(due, Some(since + OVERDUE_FLOOR));
    // Overdue: tasks 3 to 5, behind task 2 in its frame and not started, go to worker 1
    // (before, a frame went whole or not at all, and they waited for task 2 for ever).
    let (flushes, _) = s.relieve(&mut s.lock(), 1, since + Duration::from_millis(50));
    s.flush(flushes);
    assert_eq!(*fake.recalled.lock().unwrap(), [5]);
    let each = CANCELLABLE | FLUSH_SOON;
    assert_eq!(pipes[1].batches()[1..], [(1, 7, each, vec![vec![3], vec![4], vec![5]])]);
    assert_eq!(held(&s, 0), [(1, false), (1, true), (1, true), (1, true)]);
    // Task 2 ends; the worker says it skipped the others: nothing is delivered twice.
    let mut state = s.lock();
    s.answered(&mut state, 0, 1..2, (Instant::now(), 1), false, |_, _| {}).unwrap();
    for seq in 2..5 {
        let skipped = seq..seq + 1;
        s.answered(&mut state, 0, skipped, (Instant::now(), 0), true, |_, _| panic!()).unwrap();
    }
    assert!(state.slots[0].sent.is_empty() && state.queue.is_empty());
}

#[test]
fn a_task_the_worker_started_stays_and_those_after_it_in_the_frame_go() {
    let (s, fake, pipes) = a_frame_of_single_tasks_behind_one_that_runs_long();
    answer_one(&s, 1);
    // Task 2 ended meanwhile and task 3 runs: only 4 and 5 go.
    fake.set(3, 2);
    let since = s.lock().slots[0].head_since.unwrap();
    let (flushes, _) = s.relieve(&mut s.lock(), 1, since + Duration::from_millis(50));
    s.flush(flushes);
    assert_eq!(held(&s, 0), [(1, false), (1, false), (1, true), (1, true)]);
    let each = CANCELLABLE | FLUSH_SOON;
    assert_eq!(pipes[1].batches()[1..], [(1, 7, each, vec![vec![4], vec![5]])]);
}

#[test]
fn a_supervisor_whose_worker_holds_work_behind_a_long_task_sends_it_to_an_idle_worker() {
    let (s, fake, pipes) = a_frame_of_single_tasks_behind_one_that_runs_long();
    // Work went behind the head of a worker whose supervisor did not look: it was woken.
    let since = s.lock().slots[0].head_since.unwrap();
    assert_eq!(s.lock().slots[0].watch_at, Some(since + OVERDUE_FLOOR));
    let (flushes, due) = s.shed(&mut s.lock(), 0, since + Duration::from_millis(5));
    assert!(flushes.is_empty());
    assert_eq!(due, Some(since + OVERDUE_FLOOR));
    // Overdue, but no worker is idle: nothing moves; it looks again a while later.
    let late = since + Duration::from_millis(50);
    let (flushes, due) = s.shed(&mut s.lock(), 0, late);
    assert!(flushes.is_empty());
    assert_eq!(due, Some(late + OVERDUE_FLOOR));
    assert!(fake.recalled.lock().unwrap().is_empty());
    assert_eq!(s.lock().slots[0].watch_at, Some(late + OVERDUE_FLOOR));
    // Worker 1 answers; though its supervisor does not look (a caller read the answer), the
    // tasks go to it when worker 0's supervisor looks again.
    {
        let mut state = s.lock();
        s.answered(&mut state, 1, 0..1, (Instant::now(), 50), false, |_, _| {}).unwrap();
    }
    let (flushes, due) = s.shed(&mut s.lock(), 0, late + OVERDUE_FLOOR);
    s.flush(flushes);
    assert_eq!(due, None);
    assert_eq!(s.lock().slots[0].watch_at, None);
    let each = CANCELLABLE | FLUSH_SOON;
    assert_eq!(pipes[1].batches()[1..], [(1, 7, each, vec![vec![3], vec![4], vec![5]])]);
    assert_eq!(held(&s, 0), [(1, false), (1, true), (1, true), (1, true)]);
}

/// A pool of `workers` on `cpus` CPUs, each worker ready with a status page (`stacking.rs`
/// stacks only where it can take work back) whose requests are recorded; `n` single tasks of
/// one function measured at 1 µs, submitted one by one.
fn tiny_tasks_on(workers: usize, cpus: usize, n: u8) -> (Shared, Vec<Arc<FakeProcess>>) {
    let job = Paced::new(Shipped { entry: 7, state: Vec::new(), kept: Default::default() });
    (0..200).for_each(|_| job.pace.record(1_000));
    tasks_of_on(&job, workers, cpus, n)
}

/// As [`tiny_tasks_on`], with `n` single tasks of `job`, measured as the caller says.
///
/// The tasks come as a burst does: a worker counts as running tiny work only while its head
/// started under [`TINY_OVERDUE`] ago, so a set-up whose submits a loaded machine stalled
/// past that (later submits then see no worker running tiny work) is built again.
fn tasks_of_on(
    job: &Arc<Paced>,
    workers: usize,
    cpus: usize,
    n: u8,
) -> (Shared, Vec<Arc<FakeProcess>>) {
    for _ in 0..100 {
        let mut s = shared(ProcessConfig::new(Config::new().workers(workers)), workers);
        s.cpus = cpus;
        let fakes: Vec<_> = (0..workers)
            .map(|w| {
                let fake = Arc::new(FakeProcess::default());
                fake.set(1, 0);
                attach(&s, w, fake.clone(), Arc::new(Recording::default()));
                fake
            })
            .collect();
        let started = Instant::now();
        for i in 0..n {
            s.submit(single(job, i));
        }
        if started.elapsed() < TINY_OVERDUE {
            return (s, fakes);
        }
    }
    panic!("100 bursts of {n} submits each took longer than {TINY_OVERDUE:?}");
}

/// How many items each worker holds.
fn holdings(s: &Shared) -> Vec<usize> {
    let workers = s.lock().slots.len();
    (0..workers).map(|w| sent(s, w)).collect()
}

#[test]
fn tiny_tasks_go_to_as_many_workers_as_there_are_cpus_and_stack_there_each_in_its_frame() {
    let (s, _) = tiny_tasks_on(16, 2, 20);
    let held = holdings(&s);
    assert!(held[0] >= 1 && held[1] >= 1 && held[0] + held[1] == 20, "{held:?}");
    assert!(held[2..].iter().all(|&n| n == 0), "two CPUs, two workers woken: {held:?}");
    let state = s.lock();
    assert!(state.queue.is_empty());
    // Each in a frame of its own, and watched by its worker's supervisor from the moment
    // the head runs a millisecond; the idle workers' supervisors are left asleep.
    for slot in &state.slots[..2] {
        assert!(slot.sent.iter().all(|sl| sl.frame_start));
        assert_eq!(slot.watch_at, Some(slot.head_since.unwrap() + TINY_OVERDUE));
    }
    assert!(state.slots[2..].iter().all(|slot| slot.watch_at.is_none()));
    drop(state);
    // Work not measured tiny goes to an idle worker, as on any pool.
    s.submit(run(1, NullSink, Batching::Fixed(1)));
    assert_eq!(holdings(&s)[2], 1);
}

#[test]
fn tiny_tasks_of_a_function_whose_calls_vary_go_to_idle_workers_until_they_stop_varying() {
    // Measured at 1 µs, but one recent call took 3 ms: a task stacked behind its next such
    // call would wait a millisecond, then be taken back and sent on.
    let job = Paced::new(Shipped { entry: 7, state: Vec::new(), kept: Default::default() });
    (0..200).for_each(|_| job.pace.record(1_000));
    job.pace.record(3_000_000);
    (0..30).for_each(|_| job.pace.record(1_000));
    assert!(job.pace.batch_target() > 1, "its estimate is tiny again");
    // As on a pool of fewer workers: each idle worker takes one, the rest waits.
    let (s, _) = tasks_of_on(&job, 16, 2, 20);
    assert_eq!(holdings(&s), [1; 16]);
    assert_eq!(s.lock().queue.len(), 4);
    // Once its calls have been tiny long enough, its tasks are stacked again.
    (0..LONG_ITEM_MEMORY).for_each(|_| job.pace.record(1_000));
    let (s, _) = tasks_of_on(&job, 16, 2, 20);
    let held = holdings(&s);
    assert_eq!(held[0] + held[1], 20, "{held:?}");
}

#[test]
fn below_eight_workers_per_cpu_or_without_status_pages_tiny_tasks_go_to_idle_workers() {
    // Each idle worker takes one; the rest waits for the next answer.
    let (s, _) = tiny_tasks_on(15, 2, 20);
    assert_eq!(holdings(&s), [1; 15]);
    assert_eq!(s.lock().queue.len(), 5);
    // Nothing a worker without a status page holds can be taken back: nothing is stacked.
    let mut s = shared(ProcessConfig::new(Config::new().workers(16)), 16);
    s.cpus = 2;
    (0..16).for_each(|w| attach(&s, w, Arc::new(FakeProcess::default()), Arc::new(NullPipe)));
    let job = Paced::new(Shipped { entry: 7, state: Vec::new(), kept: Default::default() });
    (0..200).for_each(|_| job.pace.record(1_000));
    (0..16).for_each(|i| s.submit(single(&job, i)));
    assert_eq!(holdings(&s), [1; 16]);
}

#[test]
fn a_stacked_worker_whose_tiny_task_waits_hands_what_it_holds_to_idle_workers() {
    let (s, fakes) = tiny_tasks_on(16, 2, 20);
    let stacked = sent(&s, 0);
    assert!(stacked > 1, "worker 0 holds {stacked}");
    let since = s.lock().slots[0].head_since.unwrap();
    // Under a millisecond its task may still be computing: its supervisor looks again then.
    let (flushes, due) = s.shed(&mut s.lock(), 0, since + Duration::from_micros(500));
    assert!(flushes.is_empty());
    assert_eq!(due, Some(since + TINY_OVERDUE));
    assert!(fakes[0].recalled.lock().unwrap().is_empty());
    // Past it (not the general 10 ms), the task waits for something: what the worker holds
    // behind it goes to idle workers, a worker each, though two workers run tiny work.
    let (flushes, _) = s.shed(&mut s.lock(), 0, since + Duration::from_millis(2));
    s.flush(flushes);
    assert_eq!(fakes[0].recalled.lock().unwrap().len(), 1);
    let state = s.lock();
    let unrecalled = |w: usize| state.slots[w].sent.iter().filter(|sl| !sl.recalled).count();
    assert_eq!(unrecalled(0), 1, "worker 0 keeps only the task it runs");
    assert_eq!((2..16).filter(|&w| unrecalled(w) == 1).count(), stacked - 1);
    assert!(state.queue.is_empty());
    assert_eq!((1..16).map(unrecalled).sum::<usize>(), 19, "every task but the running one");
}

#[test]
fn a_stacked_worker_hands_on_what_it_holds_also_once_its_function_is_measured_slow() {
    let (s, fakes) = tiny_tasks_on(16, 2, 20);
    let stacked = sent(&s, 0);
    assert!(stacked > 1, "worker 0 holds {stacked}");
    let (since, job) = {
        let state = s.lock();
        (state.slots[0].head_since.unwrap(), state.slots[0].sent[0].run.job.clone())
    };
    // A call of the same function ran long elsewhere, and ended after the work was stacked:
    // its estimate is 12.5 ms now. The head still waits past a millisecond, with idle
    // workers: what it holds goes to them then, not after four times the new estimate.
    job.pace.record(100_000_000);
    let (flushes, _) = s.shed(&mut s.lock(), 0, since + Duration::from_millis(2));
    s.flush(flushes);
    assert_eq!(fakes[0].recalled.lock().unwrap().len(), 1, "nothing taken back");
    let state = s.lock();
    let unrecalled = |w: usize| state.slots[w].sent.iter().filter(|sl| !sl.recalled).count();
    assert_eq!(unrecalled(0), 1, "worker 0 keeps only the task it runs");
    assert!(state.queue.is_empty());
    assert_eq!((1..16).map(unrecalled).sum::<usize>(), 19, "every task but the running one");
}

#[test]
fn a_task_taken_back_is_not_held_back_from_an_idle_worker() {
    let (s, _) = tiny_tasks_on(16, 2, 20);
    let job = Paced::new(Shipped { entry: 7, state: Vec::new(), kept: Default::default() });
    (0..200).for_each(|_| job.pace.record(1_000));
    let again = single(&job, 99);
    s.lock().queue.push_front(Slice::taken_back(again.clone(), 0..1));
    let flushes = s.pump_all(&mut s.lock());
    s.flush(flushes);
    // Once taken back (from behind a task that may wait for it), it is never stacked again.
    assert_eq!(again.worker(), Some(2), "an idle worker took it");
    // A tiny task never taken back still is: on a worker that runs tiny work (worker 2 now
    // does), not on one of those idle. Their heads count as started under a millisecond ago
    // however long this test has run so far (a loaded machine stalls it past that).
    let later = Instant::now() + Duration::from_secs(3600);
    (0..3).for_each(|w| s.lock().slots[w].head_since = Some(later));
    let fresh = single(&job, 100);
    s.submit(fresh.clone());
    assert!(fresh.worker().is_some_and(|w| w <= 2), "{:?}", fresh.worker());
    assert_eq!(holdings(&s)[3..], [0; 13]);
}

#[test]
fn a_task_its_worker_skipped_though_the_pool_saw_it_start_goes_to_an_idle_worker() {
    let (s, _fake, pipes) = a_frame_of_single_tasks_behind_one_that_runs_long();
    answer_one(&s, 1);
    assert_eq!(sent(&s, 1), 0, "worker 1 is idle");
    // Worker 0 ends task 2, then skips task 3 as taken back, which the pool had seen start
    // (both saw the other: see `status.rs`), and runs task 4, which waits. Task 3 is queued
    // again; worker 0 takes nothing while another is idle: the idle one must take it.
    let mut state = s.lock();
    s.answered(&mut state, 0, 1..2, (Instant::now(), 50), false, |_, _| {}).unwrap();
    s.answered(&mut state, 0, 2..3, (Instant::now(), 0), true, |_, _| panic!()).unwrap();
    let flushes = s.pump(&mut state, 0);
    drop(state);
    s.flush(flushes);
    let each = CANCELLABLE | FLUSH_SOON;
    assert!(s.lock().queue.is_empty(), "task 3 waits in the queue with a worker idle");
    assert_eq!(pipes[1].batches()[1..], [(1, 7, each & !FLUSH_SOON, vec![vec![3]])]);
}
