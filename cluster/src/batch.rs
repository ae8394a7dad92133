//! `map`, `imap` and `imap_unordered`: items pulled lazily and sent in chunks, each chunk one
//! unit with per-item results, with a bounded number of items and chunks in flight.
//! Dropping the iterator withdraws the chunks still in flight: those not yet started never
//! run, and the agents stop giving out the items of those that run.

use std::collections::{HashMap, VecDeque};
use std::iter::Fuse;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use taskpool_core::backend::{Job, Reorder, deadline_after, recv_until};
use taskpool_core::{NextTimeout, Side, TaskError, Timeout};
use taskpool_process::remote::{self, EncodedJob};

use crate::chunk::ItemTime;
use crate::link::Queue;
use crate::pool::Inner;
use crate::wire::Unit;

/// The most items an `imap` pulls ahead of its consumer.
pub(crate) const LAZY_WINDOW: usize = 16_384;
/// The most bytes of a batch's encoded items in flight (sent, and their results not back),
/// past which it sends no more chunks, though always one: what the caller holds until the
/// server stores them and the tasks stream until agents finish them, whatever the workers
/// it plans for (four chunks each, of up to half the server's message limit).
const AHEAD_BYTES: usize = 64 << 20;

/// Evens out a chunk of `ends.len()` items (`inputs`, their encodings, ending at `ends`),
/// meant to take `size` but cut short by bytes: as many chunks as `size` needs of these,
/// each of as many items, this the first. The items past its even share go back to the
/// front of `carried`, for the next chunks; returns the items it keeps, the size of the
/// pass's next chunks. Cut by bytes alone, a share of 9 items of 100 KiB for each of two
/// agents (on a server of 1 MiB messages) went in chunks of 6, 6 and 6, and one agent
/// took two of the three; now 5, 5, 5 and 3.
fn even_out(
    carried: &mut VecDeque<Vec<u8>>,
    size: usize,
    inputs: &mut Vec<u8>,
    ends: &mut Vec<u32>,
) -> usize {
    let count = ends.len();
    let items = size.div_ceil(size.div_ceil(count.max(1)));
    if items >= count {
        return count;
    }
    for k in (items..count).rev() {
        let (start, end) = (ends[k - 1] as usize, ends[k] as usize);
        carried.push_front(inputs[start..end].to_vec());
    }
    inputs.truncate(ends[items - 1] as usize);
    ends.truncate(items);
    items
}

/// Outcomes of consecutive items of a chunk: the chunk (its first item's index), the first
/// of these items' index, their outcomes, whether they are the chunk's last, and the bytes of
/// their encoded results.
type Group<R> = (usize, usize, Vec<Result<R, TaskError>>, bool, usize);

/// A batch in progress; yields outcomes in input order (`ordered`) or as they arrive.
pub(crate) struct Stream<'p, J: Job, I> {
    inner: &'p Arc<Inner>,
    job: Result<EncodedJob, TaskError>,
    /// The job's id among the caller's, for its units ([`Unit::job`]).
    job_id: u64,
    /// What the job's items cost on the agents, from its own units: its chunks' size.
    time: Arc<ItemTime>,
    items: Fuse<I>,
    /// Items pulled ahead of their chunk: those of a pass made before the job measured what
    /// its items cost, pulled first to share them out among the agents.
    lookahead: VecDeque<J::Input>,
    /// The most items pulled and not yet yielded.
    window: usize,
    /// Whether the window is one of items to be yielded one by one (`imap`), kept to
    /// [`AHEAD_BYTES`] of results once they are known: not a `map`'s, which collects them all.
    lazy: bool,
    /// The results received, and the bytes of their encoded values.
    results: (u64, u64),
    /// Index of the next item to pull.
    pulled: usize,
    /// The encoded inputs of the items from `pulled` on, pulled already: left out of the last
    /// chunk, as they did not fit in it, or to even out the chunks of a pass cut by bytes.
    carried: VecDeque<Vec<u8>>,
    /// The items pulled and not yet yielded.
    order: Reorder<Result<J::Output, TaskError>>,
    /// Chunks sent and not yet received back: their unit ids and the bytes of their encoded
    /// items, by their first item's index.
    units: HashMap<usize, (u64, usize)>,
    /// The bytes of the encoded items of `units`.
    ahead: usize,
    tx: Sender<Group<J::Output>>,
    rx: Receiver<Group<J::Output>>,
    /// Whether the pool refused an item as shut down: no more items are pulled.
    refused: bool,
    job_type: PhantomData<J>,
}

impl<'p, J: Job, I: Iterator<Item = J::Input>> Stream<'p, J, I> {
    pub(crate) fn new(
        inner: &'p Arc<Inner>,
        job: J,
        items: I,
        ordered: bool,
        window: usize,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Stream {
            inner,
            // A state too large for any unit fails every item, naming the task.
            job: remote::off_machine(|| EncodedJob::of(&job)).and_then(|job| {
                match Unit::state_too_large(job.state().len(), inner.max_unit()) {
                    Some(error) => Err(error),
                    None => Ok(job),
                }
            }),
            job_id: inner.new_job(),
            time: Arc::new(ItemTime::new()),
            items: items.fuse(),
            lookahead: VecDeque::new(),
            window: window.max(1),
            lazy: window < usize::MAX,
            results: (0, 0),
            pulled: 0,
            carried: VecDeque::new(),
            order: Reorder::new(ordered),
            units: HashMap::new(),
            ahead: 0,
            tx,
            rx,
            refused: false,
            job_type: PhantomData,
        }
    }

    /// The most items pulled and not yet yielded now: of an `imap`, no more than
    /// [`AHEAD_BYTES`] of results of the size of those received so far, at least one.
    fn window(&self) -> usize {
        let (count, bytes) = self.results;
        match bytes.checked_div(count) {
            Some(each) if self.lazy && each > 0 => {
                let fit = usize::try_from(AHEAD_BYTES as u64 / each).unwrap_or(usize::MAX);
                self.window.min(fit.max(1))
            }
            _ => self.window,
        }
    }

    /// Pulls chunks while the window has room and sends them together at the end, spread
    /// over the agents ([`Inner::send_spread`]): the first chunks of a job, and as well the
    /// several chunks it sends at once when a result makes room for them (the burst once its
    /// first unit is measured). Loose, these queued together and travelled in one message,
    /// which one agent took while the others waited. A `map`'s passes go to the queue whose
    /// parcels agents pull for their free workers ([`Queue::Parcels`]), an `imap`'s to that
    /// of single tasks, which agents pull for their free slots: an `imap` is often one of
    /// many callers', whose tasks take turns on an agent.
    fn refill(&mut self) {
        let mut pass = Vec::new();
        self.fill(&mut pass);
        if !pass.is_empty() {
            let queue = if self.lazy { Queue::Tasks } else { Queue::Parcels };
            self.inner.send_spread(pass, queue);
        }
    }

    /// Pulls chunks while the window has room, into `pass`.
    fn fill(&mut self, pass: &mut Vec<Unit>) {
        let workers = self.inner.planned_workers();
        let max_chunks = 4 * workers + 2;
        let window = self.window();
        let chunks = max_chunks.saturating_sub(self.units.len());
        let unmeasured = self.unmeasured_chunk(chunks, window.saturating_sub(self.order.held()));
        // The items of the pass's chunks once one was cut short by bytes (see `even_out`).
        let mut even = None;
        while self.units.len() < max_chunks
            && self.order.held() < window
            && (self.units.is_empty() || self.ahead < AHEAD_BYTES)
        {
            if unmeasured.is_some() && self.lookahead.is_empty() && self.carried.is_empty() {
                // The pass sent what it pulled: no more before a unit is measured.
                return;
            }
            let room = window - self.order.held();
            let base = self.pulled;
            let job = match &self.job {
                Ok(job) => job,
                Err(e) => {
                    let next = self.lookahead.pop_front().or_else(|| self.items.next());
                    let Some(_) = next else { return };
                    self.order.settled(base, Err(e.clone()));
                    self.pulled += 1;
                    continue;
                }
            };
            let (low, high) = self.items.size_hint();
            let remaining = (Some(low) == high).then(|| low.saturating_add(self.lookahead.len()));
            let size = match (self.inner.config.config.get_chunk_size(), unmeasured) {
                (Some(size), _) | (None, Some(size)) => size.min(room),
                (None, None) => self.time.chunk(remaining, workers, room),
            };
            let size = even.map_or(size, |even: usize| even.min(size));
            let max_unit = self.inner.max_unit();
            let budget = max_unit / 2;
            let state = job.state().len();
            // The largest input that fits in a unit of its own.
            let largest = max_unit.saturating_sub(Unit::weight_of(state, 0, 1));
            let mut inputs = Vec::new();
            let mut ends = Vec::new();
            let mut positions = Vec::new();
            let mut count = 0;
            while count < size && inputs.len() < budget {
                let start = inputs.len();
                let encoded = match self.carried.pop_front() {
                    Some(carried) => {
                        inputs.extend_from_slice(&carried);
                        Ok(())
                    }
                    None => {
                        let next = self.lookahead.pop_front().or_else(|| self.items.next());
                        let Some(item) = next else { break };
                        remote::off_machine(|| {
                            remote::encode_into(&item, &mut inputs, Side::Argument)
                        })
                    }
                };
                let len = inputs.len() - start;
                match encoded {
                    Ok(()) if len > largest => {
                        inputs.truncate(start);
                        let (size, limit) = (len as u64, largest as u64);
                        let error = TaskError::TooLarge { side: Side::Argument, size, limit };
                        self.order.settled(base + count, Err(error));
                    }
                    Ok(()) if Unit::weight_of(state, inputs.len(), ends.len() + 1) > max_unit => {
                        // It fits alone but not with the chunk's other items: it starts the
                        // next chunk rather than failing for its neighbours' size.
                        self.carried.push_front(inputs.split_off(start));
                        break;
                    }
                    Ok(()) => {
                        ends.push(inputs.len() as u32);
                        positions.push(base + count);
                    }
                    Err(e) => {
                        self.order.settled(base + count, Err(e));
                    }
                }
                count += 1;
            }
            let cut = inputs.len() >= budget || !self.carried.is_empty();
            if even.is_none() && cut && count < size && ends.len() == count {
                let items = even_out(&mut self.carried, size, &mut inputs, &mut ends);
                count = items;
                positions.truncate(items);
                even = Some(items);
            }
            if count == 0 {
                return;
            }
            self.pulled += count;
            if ends.is_empty() {
                continue;
            }
            let sent = ends.len();
            self.order.sent(sent);
            let tx = self.tx.clone();
            let contiguous = sent == count;
            let settle = Box::new(move |outcomes: Vec<Result<&[u8], TaskError>>| {
                let sizes: Vec<usize> =
                    outcomes.iter().map(|o| o.as_ref().map_or(0, |bytes| bytes.len())).collect();
                let values: Vec<Result<J::Output, TaskError>> = outcomes
                    .into_iter()
                    .map(|o| {
                        o.and_then(|bytes| {
                            remote::off_machine(|| remote::decode(bytes, Side::Result))
                        })
                    })
                    .collect();
                if contiguous {
                    let _ = tx.send((base, base, values, true, sizes.iter().sum()));
                } else {
                    let last = values.len();
                    let each = positions.into_iter().zip(values).zip(sizes).enumerate();
                    for (k, ((at, value), size)) in each {
                        let _ = tx.send((base, at, vec![value], k + 1 == last, size));
                    }
                }
            });
            let (units, ahead) = (&mut self.units, &mut self.ahead);
            let bytes = inputs.len();
            let on_id = |id| {
                units.insert(base, (id, bytes));
                *ahead += bytes;
            };
            let held = Some(&mut *pass);
            let time = Some(&self.time);
            self.inner.send(self.job_id, time, job, inputs, ends, None, settle, on_id, held);
        }
    }
}

impl<J: Job, I: Iterator<Item = J::Input>> Stream<'_, J, I> {
    /// The size of a pass's chunks while the job has not measured what its items cost (and
    /// no chunk size is set), or `None`. The pass sends as many items as it may send chunks
    /// (`chunks`, at most `room`): no more of a job that may be of slow items, so that a task
    /// another caller sends after it does not wait behind all of it. It pulls them first, into
    /// the lookahead, and shares them out among the agents alive, each share in a message of
    /// its own ([`Inner::send_spread`]): each chunk and message costs the server a round of
    /// work, which for cheap items is most of the time the call takes. An `imap`'s share
    /// travels in chunks of at most one item per worker of the smallest agent: a chunk's
    /// results come back together, once its last item is done, so a chunk of more items than
    /// its agent has workers would hold back the first results behind items that wait for a
    /// worker (an `imap` of 1 s items on two agents of two workers yielded its first after
    /// 2 s, not 1 s). A `map` sends a chunk for each worker of the agents alive, which they
    /// pull one at a time for each free worker: it returns nothing before its last result,
    /// and each chunk more would cost its round of work. An `imap` whose items come slowly
    /// sends these chunks once the pass has pulled them all. With no agent alive yet, a chunk
    /// takes one item: whichever agents come share them.
    fn unmeasured_chunk(&mut self, chunks: usize, room: usize) -> Option<usize> {
        let sized = self.inner.config.config.get_chunk_size().is_some();
        if self.time.measured() || sized || self.job.is_err() {
            return None;
        }
        while self.lookahead.len() < chunks.min(room) {
            let Some(item) = self.items.next() else { break };
            self.lookahead.push_back(item);
        }
        match self.inner.live_agents() {
            (0, _) => Some(1),
            (_, workers) if !self.lazy => Some(self.lookahead.len().div_ceil(workers).max(1)),
            (agents, _) => {
                let share = self.lookahead.len().div_ceil(agents);
                Some(share.min(self.inner.fewest_workers()).max(1))
            }
        }
    }

    /// The next outcome, waiting for it until `deadline` (none: for ever). Past it, the
    /// chunks still out stay out, for a later call.
    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<J::Output, TaskError>>, Timeout> {
        loop {
            if !self.refused {
                self.refill();
            }
            if let Some(value) = self.order.pop() {
                self.refused |= matches!(value, Err(TaskError::ShutDown));
                return Ok(Some(value));
            }
            if self.order.out() == 0 {
                return Ok(None);
            }
            // Every unit is settled exactly once (by its result, or by a failure of the pool),
            // so this receives what was sent.
            let received = recv_until(&self.rx, deadline)?;
            let Some((chunk, first, values, last, size)) = received else { return Ok(None) };
            self.results.0 += values.len() as u64;
            self.results.1 += size as u64;
            let done = if last { self.units.remove(&chunk) } else { None };
            if let Some((_, bytes)) = done {
                self.ahead -= bytes;
            }
            self.order.received(first, values);
        }
    }
}

impl<J: Job, I: Iterator<Item = J::Input>> Iterator for Stream<'_, J, I> {
    type Item = Result<J::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        // With no deadline, nothing times out.
        self.next_until(None).unwrap_or(None)
    }
}

impl<J: Job, I: Iterator<Item = J::Input>> NextTimeout for Stream<'_, J, I> {
    fn next_timeout(&mut self, limit: Duration) -> Result<Option<Self::Item>, Timeout> {
        self.next_until(deadline_after(limit))
    }
}

impl<J: Job, I> Drop for Stream<'_, J, I> {
    /// Withdraws the chunks in flight: their results are not wanted any more.
    fn drop(&mut self) {
        for (_, (id, _)) in self.units.drain() {
            self.inner.cancel(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six items of one byte each (`0` to `5`), ending at 1 to 6.
    fn chunk() -> (Vec<u8>, Vec<u32>) {
        ((0..6).collect(), (1..=6).collect())
    }

    #[test]
    fn a_chunk_cut_short_keeps_an_even_share_and_carries_the_rest_in_order() {
        let mut carried = VecDeque::from([vec![9]]);
        let (mut inputs, mut ends) = chunk();
        // Meant for 9, cut at 6: two chunks of 5 and 4.
        assert_eq!(even_out(&mut carried, 9, &mut inputs, &mut ends), 5);
        assert_eq!((inputs, ends), (vec![0, 1, 2, 3, 4], vec![1, 2, 3, 4, 5]));
        assert_eq!(carried, [vec![5], vec![9]]);
        // Meant for 12, cut at 6: two chunks of 6 already.
        let (mut inputs, mut ends) = chunk();
        assert_eq!(even_out(&mut carried, 12, &mut inputs, &mut ends), 6);
        assert_eq!(inputs.len(), 6);
        // Meant for 20, cut at 6: four chunks of 5.
        let (mut inputs, mut ends) = chunk();
        let mut carried = VecDeque::new();
        assert_eq!(even_out(&mut carried, 20, &mut inputs, &mut ends), 5);
        assert_eq!(carried, [vec![5]]);
    }
}
