#!/usr/bin/env python3
"""Peer benchmark: Python's own pools, measured the way taskpool measures its Rust pools.

The taskpool report (bench-suite) runs this script with the system ``python3`` to put numbers
for Python's pools next to the Rust thread and process pools. Standard library only; works on
CPython 3.8 and later.

Interface
---------
``python3 peers.py --spec SPEC.json`` (``--spec -`` reads the spec from stdin) prints ONE JSON
object to stdout and progress lines (``peers: ...``) to stderr; among them, ``peers: progress
FRACTION TEXT`` says how much of the whole run is done (0 to 1) for the caller's progress bar. The exit code is 0 even when
a scenario fails: the failure is recorded in that scenario's cell and in ``errors``. Only an
unreadable spec exits non-zero (2), still printing a JSON object with ``errors``.
``python3 peers.py --self-test`` runs a tiny built-in spec (well under 20 s) and prints the
same kind of JSON, for checking by hand. ``python3 peers.py --serve WORKERS`` serves samples on
request instead (see "Serving mode" below). The spec (every key optional; these are defaults)::

    {"workers": 2, "repeats": 5, "quick": false,
     "scenarios": ["startup", "spawn", "round_trip", "in_flight", "map_noop", "imap_noop",
                   "payload", "shared_memory", "cpu", "io", "memory", "faults"],
     "in_flight_tasks": 1000, "map_items": 100000, "payload_bytes": [0, 1024, 65536, 1048576],
     "cpu": [{"kernel": "primes", "args": [1000000, 2000], "tasks": 64, "label": "1ms"}],
     "fault_timeout_s": 5.0}

Optional extra keys: ``variants`` (a subset of the three below), ``cpu_variants`` (those of
them the cpu scenario runs; default all), ``round_trips`` and ``payload_round_trips`` (per
repeat; defaults 2000 and 200, or 200 and 30 when quick; a payload over 1 MiB makes
proportionally fewer round trips, at least 3), ``per_item_map_items`` (the items of
a map that sends one item per message; default 10000, 2000 when quick), ``burst_items`` (the
no-ops of the burst before a cpu entry's ``after_burst`` run; default 100000, 20000 when
quick), ``fault_alloc_mib`` (the memory fault's guard, default 2048),
``fault_memory_limit_mib`` (an address-space limit the memory fault meets, as
``resource.setrlimit(RLIMIT_AS)``: the thread variant's whole child interpreter, each worker
of a process variant through the pool's ``initializer``; default none), ``map_repeats`` (the
repeats of ``map_noop``; default ``repeats``), ``map_skip`` (keys of ``map_noop`` runs to leave
out, such as ``["pool_map"]`` when the caller samples it itself in serving mode; default
none), ``imap_items`` (the items of ``imap_noop``; default ``per_item_map_items``),
``imap_skip`` (keys of ``imap_noop`` runs to leave out, as ``map_skip``). A cpu entry may say
``"after_burst": true``, and a mandel entry ``"step"`` (see "Kernels").
``quick`` also caps the default ``map_items`` (not one the spec gives) at 10000, and the cpu
and memory repeats at 3.

Variants (pools)
----------------
``mp_pool`` multiprocessing.Pool (the platform's default start method: fork on Linux up to
3.13), ``process_executor`` concurrent.futures.ProcessPoolExecutor, ``thread_executor``
concurrent.futures.ThreadPoolExecutor; ``map_noop`` also maps on ``mp_thread_pool``,
multiprocessing.pool.ThreadPool. Pools are kept as a program keeps its pool: one pool per
variant and worker count serves every scenario after ``startup`` (which times fresh ones), and
``memory`` and ``faults`` start their own. Every scenario but ``faults`` is measured ``repeats``
times, the variants interleaved inside each repeat (A, B, C, A, B, C, ...) so that drift of
the shared machine hits them all alike; each statistic reports ``median_<unit>``,
``min_<unit>``, ``max_<unit>`` and ``samples_<unit>`` (one sample per repeat).

Scenarios: ``results[scenario][variant]``
-----------------------------------------
startup     construct a pool of ``workers`` to the first result of one no-op (median_us ...);
            the shutdown that follows is timed apart (``shutdown``).
spawn       a one-off worker that runs a no-op, started and joined, ``spawns`` (a key of
            the spec) times per repeat (default 20, 10 when quick); a sample is that repeat's median
            (median_us ...): ``multiprocessing.Process(target=noop)`` ``start()`` +
            ``join()`` under ``mp_pool`` (the default start method, as the pools') and
            ``threading.Thread(target=noop)`` ``start()`` + ``join()`` under
            ``thread_executor``; no other variant.
round_trip  warm pool: submit one no-op and wait, ``round_trips`` times per repeat; a sample
            is that repeat's per-task median (median_us ...), ``p99`` likewise.
in_flight   warm pool: submit ``in_flight_tasks`` no-ops at once, wait for all
            (median_tasks_per_s ...); ``submit_us_per_task`` is the submitting part alone.
map_noop    warm pool: ``map`` of ``identity`` (returns its argument, as the Rust side's
            mapped no-op does) over integers, every way a user would call it
            (``results.map_noop[pool].runs[key]``, median_items_per_s ... with ``call``,
            ``chunksize``, ``items``, ``is_default`` and ``follows_docs``): Pool.map and
            ThreadPool.map with their default chunks (ceil(n / (4 * workers))) over
            ``map_items``; ProcessPoolExecutor.map with its default chunksize=1 over
            ``per_item_map_items`` and with chunksize=ceil(n / (4 * workers)), as its docs
            advise for long inputs, over ``map_items``; ThreadPoolExecutor.map (one future per
            item: chunksize does nothing on threads) over ``per_item_map_items``.
imap_noop   warm pool: ``imap`` of ``identity`` over a list of ``imap_items`` integers (made
            before the clock) with its default chunksize=1, each result taken as it comes
            (every wait bounded), ``map_repeats`` times: Pool.imap (``pool_imap``) and
            multiprocessing.pool.ThreadPool.imap (``thread_pool_imap``); and Pool.imap with
            chunksize=ceil(n / (4 * workers)) (``pool_imap_chunked``: Pool.map's default
            chunks, as the docs advise "a large value for chunksize" for long iterables). In
            the shape of ``map_noop`` (``results.imap_noop[pool].runs[key]``,
            median_items_per_s ... with ``call``, ``chunksize``, ``items``, ``is_default`` and
            ``follows_docs``).
payload     warm pool: round trip of a ``bytes`` of each size in ``payload_bytes`` through a
            task that returns its argument (``sizes[str(size)]``: median_us ...).
shared_memory  warm pool, mp_pool only: the same round trip with the bytes in a new
            ``multiprocessing.shared_memory.SharedMemory`` block each time, made and filled
            before the clock (closed and unlinked after it), for each nonzero size in
            ``payload_bytes``: the task gets the block's name, attaches it (untracked:
            ``track=False``, or unregistered from the resource tracker before 3.13), reads its
            last byte in place, closes it and returns the name (``sizes[str(size)]``:
            median_us ..., as ``payload``).
cpu         the kernels below, ``tasks`` tasks, run sequentially in this process
            (``results.cpu.sequential[label]``) and on each variant with 1..=workers and
            2 * workers (oversubscribed) workers (``results.cpu[variant][label].by_workers``):
            wall time (median_s ...), ``speedup_vs_sequential`` (median over median),
            ``efficiency`` (speedup / workers) and ``agree`` (every run's total equals the
            sequential one). Each ``map`` uses the API's default chunks on the kept pool of
            that size. With ``after_burst``, the pool of ``workers`` also runs the batch right
            after an untimed map of ``burst_items`` no-ops (``...[label].after_burst``:
            median_s ..., ``speedup_samples``).
io          many tasks that mostly wait (``io`` in the spec: ``service``, the abstract Unix
            socket name of the report's slow service; ``delay_us``; ``workers``, a list of
            worker counts; ``tasks_per_worker``; ``pool_needed``), on thread_executor and
            mp_pool only: per worker count, ``tasks_per_worker * workers`` tasks submitted at
            once, each sleeping ``delay_us`` (``sleep``) or reading the service's answer sent
            after ``delay_us`` (``socket``; needs the service), on warm pools
            (``throughput[kind][str(workers)]``: median_tasks_per_s ...); ``startup``: a pool
            of ``pool_needed`` to its first result (median_us ...); ``memory``: in a fresh
            interpreter, the growth of the summed PSS of the interpreter and its descendants
            once a pool of ``pool_needed`` ran a batch of sleeping tasks, per worker
            (median_kB_per_worker ...), the same measure for threads and processes.
memory      a pool of ``workers``, one held no-op per worker so that every worker is up:
            ``program_pss_increase_kB``, the growth of the program's memory (the sum of the
            PSS of this interpreter and every process descended from it, RSS where there is
            no PSS), the same quantity for threads and processes and the one the Rust side
            measures; also VmRSS of each worker process (/proc/PID/status) and, from
            /proc/PID/smaps_rollup, PSS and USS (private pages), and the parent's RSS before
            and its increase.
            Runs in a fresh child interpreter (``fresh_interpreter``), because a forked
            worker's RSS counts the pages it shares with its parent: measured here, it would
            grow with whatever the earlier scenarios left in this process.
messages    (only when the spec names it) small messages per second from a child process to
            this one through ``mp_queue`` (multiprocessing.Queue) and ``mp_pipe``
            (multiprocessing.Pipe(), duplex as by default): a fresh child per sample puts a
            marker, then ``messages`` ints (default 200000, 20000 when quick), then None; the
            clock runs from the marker's arrival to the None's (median_messages_per_s ...).
faults      one run per variant and fault: a faulty task next to ``2 * workers`` healthy ones,
            then one more healthy task. Faults: ``exception`` (raises ValueError),
            ``segfault`` (ctypes.string_at(0)), ``abort`` (os.abort()), ``hang``
            (time.sleep(10**6)), ``memory`` (allocates, touching every page, 64 MiB at a
            time, stopping at a 2 GiB guard, then returns; under ``fault_memory_limit_mib``
            an allocation the limit refuses raises MemoryError, which the task lets
            propagate once it has freed what it held). Every wait is bounded by
            ``fault_timeout_s`` (60 s at least for ``memory``: the guarded allocation always
            ends, and touching 2 GiB takes seconds); pools are then shut down in order if
            that finishes within ``min(0.5 s, fault_timeout_s)``, else terminated and their
            processes killed. Per cell: ``faulty``, ``others``, ``next_task`` (each with
            ``kind``: returned, raised, broken_pool, hung, submit_refused, program_died,
            not_run; ``outcome`` text; ``after_s`` since the faulty task was submitted),
            ``recovery_s`` (submission of the faulty task to the next healthy result, or
            null), ``workers_replaced``, ``shutdown``, ``process``, ``stage`` (the last
            stage reached) and a one-line ``summary``. The thread variant's segfault, abort
            and hang run in a child interpreter, because they take the whole program down
            or keep it from exiting, and so does the memory fault of every variant under a
            limit (which caps the thread variant's whole interpreter, and starts a process
            variant's workers from a fresh one, whose address space this run has not
            grown); ``process`` tells that child's fate.

Serving mode
------------
``python3 peers.py --serve WORKERS`` starts one ``multiprocessing.Pool(WORKERS)`` (the same
start method and ``identity`` as ``mp_pool`` above), warms it as the kept pools are warmed, and
prints one line, ``{"ready": true, "workers": ..., "mp_start_method": ..., "python": ...}``
(or ``{"error": ...}`` and exits 1 if the pool does not start). Then it reads requests, one
JSON object per line on stdin, and answers each with one JSON line on stdout:

``{"op": "map_noop", "items": N}``
    one sample of ``map_noop``'s ``pool_map`` run: ``Pool.map(identity, items)`` with its
    default chunks over the integers 0 .. N - 1, the input list made before the clock;
    answers ``{"items_per_s": X}``.
``{"op": "imap_noop", "items": N}``
    one sample of ``imap_noop``'s ``pool_imap`` run: ``Pool.imap(identity, items)`` with its
    default chunksize=1 over the integers 0 .. N - 1, each result taken as it comes, the input
    list made before the clock; answers ``{"items_per_s": X}``.
``{"op": "quit"}``
    no answer: closes the pool and exits 0, as the end of stdin does.

A request that cannot be read, or a map that fails, is answered ``{"error": "..."}`` and the
server goes on. Only these lines go to stdout; log lines go to stderr. A caller interleaves
these samples with its own, so that drift of a shared machine hits both alike.

Kernels (defined exactly so, for the Rust side to run identical work)
---------------------------------------------------------------------
primes(start, len): the count of n in [start, start + len) that are prime by trial division:
n < 2 is not prime; an even n is prime iff n == 2; an odd n is prime iff no odd d = 3, 5,
7, ... with d * d <= n divides it. Task i runs primes(start + i * len, len).

mandel(first_row, rows, width, height, max_iter): the sum over y in [first_row,
first_row + rows) (no wrap inside a task) and x in [0, width) of the escape count, where
cr = -2.0 + (3.0 * x) / width, ci = -1.5 + (3.0 * y) / height (f64, no fused multiply-add,
left to right), z = 0, and while count < max_iter and zr*zr + zi*zi <= 4.0:
(zr, zi) = ((zr*zr - zi*zi) + cr, (2.0*zr)*zi + ci); count += 1. Task i runs
mandel((first_row + i * step) % height, rows, width, height, max_iter), where ``step`` is the
entry's optional ``step`` (default ``rows``: consecutive rows); a batch of fewer tasks than
the image has rows samples the whole image with a larger step (the rows near the middle
cost tens of times the rows at the edges). ``kernel_checks``
pins both with hand-checked values (mandel(0, 2, 3, 2, 50) == 155 exercises the <= 4.0
boundary: c = -2 stays at |z|^2 == 4.0 forever).

Top level: {"python", "implementation", "platform", "mp_start_method", "workers",
"cpu_count", "spec" (as given), "effective" (the counts actually used), "kernel_checks",
"load_average" (start, end: another job on the machine skews every figure),
"scenario_wall_s", "results", "errors" (scenario, variant, error, traceback), "wall_s"}.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import ctypes
import gc
import json
import math
import multiprocessing
import multiprocessing.pool
from multiprocessing import resource_tracker, shared_memory
import os
import platform
import queue
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import traceback

VARIANTS = ("mp_pool", "process_executor", "thread_executor")
SCENARIOS = ("startup", "spawn", "round_trip", "in_flight", "map_noop", "imap_noop",
             "payload", "shared_memory", "cpu", "io", "memory", "faults")
# The pool whose column shows bytes in shared memory.
SHARED_MEMORY_VARIANTS = ("mp_pool",)
# The pools whose columns show I/O-bound work.
IO_VARIANTS = ("thread_executor", "mp_pool")
IO_KINDS = ("sleep", "socket")
FAULTS = ("exception", "segfault", "abort", "hang", "memory")
# Thread-variant faults that kill the interpreter or keep it from exiting: run in a child.
THREAD_FAULTS_IN_CHILD = ("segfault", "abort", "hang")
# The variants whose workers are threads of this process.
THREAD_VARIANTS = ("thread_executor", "mp_thread_pool")

DEFAULT_SPEC = {
    "workers": 2, "repeats": 5, "quick": False, "scenarios": list(SCENARIOS),
    "in_flight_tasks": 1000, "map_items": 100000, "payload_bytes": [0, 1024, 65536, 1048576],
    "cpu": [{"kernel": "primes", "args": [1000000, 2000], "tasks": 64, "label": "1ms"}],
    "fault_timeout_s": 5.0,
}
SELF_TEST_SPEC = {
    "workers": 2, "repeats": 2, "quick": True, "scenarios": list(SCENARIOS),
    "in_flight_tasks": 200, "map_items": 2000, "payload_bytes": [0, 65536],
    "round_trips": 50, "payload_round_trips": 10,
    "cpu": [{"kernel": "primes", "args": [1000000, 500], "tasks": 8, "label": "primes-tiny"},
            {"kernel": "mandel", "args": [0, 2, 64, 64, 50], "tasks": 8, "label": "mandel-tiny"}],
    "fault_timeout_s": 0.5, "fault_alloc_mib": 256,
    "io": {"delay_us": 2000, "workers": [2, 4], "tasks_per_worker": 2, "pool_needed": 4},
}

BENCH_WAIT_S = 120.0      # ceiling for any single wait in the measuring scenarios
TEARDOWN_WAIT_S = 10.0    # ceiling for an orderly shutdown before the pool is killed
CHILD_EXIT_GRACE_S = 1.0  # how long a fault child may take to exit after finishing its trial
ALLOC_CHUNK = 64 << 20
ALLOC_GUARD = 2 << 30
WARMUP_ROUND_TRIPS = 5     # untimed round trips before each timed series
MEMORY_FAULT_WAIT_S = 60.0  # the guarded allocation always ends; touching 2 GiB takes seconds


def log(message):
    print("peers: " + message, file=sys.stderr, flush=True)


class Progress:
    """Progress lines for the caller's progress bar: ``peers: progress FRACTION TEXT``, the
    fraction of the whole run done (0 to 1), each scenario weighted by its usual share of
    the time."""

    WEIGHTS = {"startup": 1, "spawn": 1, "round_trip": 1, "in_flight": 1, "map_noop": 3,
               "imap_noop": 1, "payload": 1,
               "shared_memory": 1, "cpu": 8, "io": 6, "memory": 2, "faults": 8}

    def __init__(self):
        self.scenarios = []
        self.current = None
        self.quiet = False  # in a child interpreter: its parent reports the progress
        self.reported = 0.0  # the bar never moves back (a scenario may interleave in rounds)

    def plan(self, scenarios):
        self.scenarios = [s for s in scenarios if s in self.WEIGHTS]

    def enter(self, scenario):
        self.current = scenario
        self.report(0.0, scenario)

    def report(self, inner, text):
        """`inner`: the fraction of the current scenario done."""
        if self.quiet:
            return
        total = sum(self.WEIGHTS[s] for s in self.scenarios) or 1
        done = 0.0
        for name in self.scenarios:
            if name == self.current:
                done += self.WEIGHTS[name] * min(max(inner, 0.0), 1.0)
                break
            done += self.WEIGHTS[name]
        self.reported = max(self.reported, done / total)
        log("progress %.4f %s" % (self.reported, text))


PROGRESS = Progress()


now = time.perf_counter


# --------------------------------------------------------------------------------------------
# Task functions: module level, so that they pickle.
# --------------------------------------------------------------------------------------------

def noop(_=None):
    return None


def identity(x):
    """What every column maps (the Rust side's ``noop`` returns its integer too): an integer
    goes each way, not an integer out and ``None`` back."""
    return x


def echo(value):
    return value


def attach_shared(name):
    """The shared-memory block called ``name``, attached without the resource tracker (which
    would unlink it when this process exits, though the block is its creator's)."""
    try:
        return shared_memory.SharedMemory(name=name, track=False)  # Python 3.13 and later
    except TypeError:
        block = shared_memory.SharedMemory(name=name)
        resource_tracker.unregister(block._name, "shared_memory")
        return block


def echo_shared(name):
    """Attaches the block called ``name``, reads its last byte where it lies and returns the
    name: bytes that cross without a copy."""
    block = attach_shared(name)
    try:
        block.buf[block.size - 1]
    finally:
        block.close()
    return name


def hold_pid(seconds):
    """Keep a worker busy briefly, so that n of these land on n distinct workers."""
    time.sleep(seconds)
    return os.getpid()


def io_sleep(micros):
    """An I/O-bound task that only waits: sleeps, then says which process it ran in."""
    time.sleep(micros / 1e6)
    return os.getpid()


def io_ask(service, delay_us):
    """An I/O-bound task that blocks on a socket: asks the report's slow service (an abstract
    Unix socket) for an answer after delay_us microseconds: 8 bytes, a little-endian u64,
    there and back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect("\0" + service)
        conn.sendall(struct.pack("<Q", delay_us))
        answer = b""
        while len(answer) < 8:
            chunk = conn.recv(8 - len(answer))
            if not chunk:
                raise ConnectionError("the slow service closed the connection early")
            answer += chunk
    if struct.unpack("<Q", answer)[0] != delay_us:
        raise ValueError("the slow service answered %r" % answer)
    return os.getpid()


def healthy(i):
    time.sleep(0.01)
    return i * i


def primes(start, length):
    count = 0
    for n in range(start, start + length):
        if n < 2:
            continue
        if n % 2 == 0:
            count += n == 2
            continue
        d = 3
        while d * d <= n:
            if n % d == 0:
                break
            d += 2
        else:
            count += 1
    return count


def mandel(first_row, rows, width, height, max_iter):
    total = 0
    for y in range(first_row, first_row + rows):
        ci = -1.5 + 3.0 * y / height
        for x in range(width):
            cr = -2.0 + 3.0 * x / width
            zr = zi = 0.0
            n = 0
            while n < max_iter and zr * zr + zi * zi <= 4.0:
                zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
                n += 1
            total += n
    return total


KERNELS = {"primes": primes, "mandel": mandel}


def run_kernel(job):
    name, args = job
    return KERNELS[name](*args)


def fault_exception(_=None):
    raise ValueError("deliberate failure inside a task")


def fault_segfault(_=None):
    ctypes.string_at(0)  # strlen(NULL): SIGSEGV


def fault_abort(_=None):
    os.abort()


def fault_hang(_=None):
    time.sleep(10 ** 6)


def fault_memory(guard_bytes=ALLOC_GUARD):
    """Allocate 64 MiB at a time (bytearray zero-fills, so every page is touched) up to the
    guard (2 GiB unless the spec says otherwise), free it all, and say how far it got; an
    allocation refused (MemoryError) frees it all and fails the task with MemoryError, as a
    task of a program fails that runs out of memory."""
    chunks = []
    try:
        while len(chunks) * ALLOC_CHUNK < guard_bytes:
            chunks.append(bytearray(ALLOC_CHUNK))
    except MemoryError:
        allocated = len(chunks) * ALLOC_CHUNK
        del chunks
        raise MemoryError("allocation refused after %d MiB" % (allocated >> 20)) from None
    allocated = len(chunks) * ALLOC_CHUNK
    del chunks
    return {"allocated_MiB": allocated >> 20, "stopped_by": "the %d MiB guard" % (guard_bytes >> 20),
            "process_peak_rss_kB": peak_rss_kb()}


def limit_address_space(limit_bytes):
    """Caps this process's address space (RLIMIT_AS, soft and hard): a pool's initializer
    for the memory fault, as a Python user limits a worker's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


FAULT_TASKS = {"exception": fault_exception, "segfault": fault_segfault, "abort": fault_abort,
               "hang": fault_hang, "memory": fault_memory}


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def peak_rss_kb():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def describe(exc):
    text = str(exc)
    return type(exc).__name__ + (": " + text if text else "")


def sig(value):
    return float("%.6g" % value)


def summary(samples, unit):
    """median/min/max/samples of one metric, the unit in every key."""
    if not samples:
        return {"median_" + unit: None, "min_" + unit: None, "max_" + unit: None,
                "samples_" + unit: []}
    return {"median_" + unit: sig(statistics.median(samples)), "min_" + unit: sig(min(samples)),
            "max_" + unit: sig(max(samples)), "samples_" + unit: [sig(s) for s in samples]}


def quantile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def bounded(fn, timeout):
    """Run fn() in a daemon thread; True if it returned within timeout (re-raising its
    exception), False if it is still running (it is then left behind, harmlessly)."""
    box = {}

    def target():
        try:
            fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="peers-bounded", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return False
    if "error" in box:
        raise box["error"]
    return True


class ScenarioTimeout(BaseException):
    """Raised by SIGALRM when a whole scenario overruns its (generous) budget."""


class guard:
    """Belt and braces against a wait that slipped through without a timeout: SIGALRM
    interrupts the main thread after `seconds`. A no-op where SIGALRM is unavailable."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.active = hasattr(signal, "SIGALRM") and \
            threading.current_thread() is threading.main_thread()

    def _fire(self, signum, frame):
        raise ScenarioTimeout("scenario exceeded its %g s budget" % self.seconds)

    def __enter__(self):
        if self.active:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
        return False


def proc_memory(pid):
    """VmRSS and VmHWM from /proc/PID/status; PSS and USS from /proc/PID/smaps_rollup (kB).
    Missing figures (not Linux, old kernel) are None."""
    fields = {"VmRSS:": "rss_kB", "VmHWM:": "hwm_kB", "Pss:": "pss_kB",
              "Private_Clean:": "uss_kB", "Private_Dirty:": "uss_kB"}
    out = {"rss_kB": None, "hwm_kB": None, "pss_kB": None, "uss_kB": None}
    for name in ("status", "smaps_rollup"):
        try:
            with open("/proc/%d/%s" % (pid, name)) as f:
                for line in f:
                    parts = line.split()
                    key = fields.get(parts[0]) if parts else None
                    if key:
                        out[key] = (out[key] or 0) + int(parts[1])
        except OSError:
            pass
    return out


# --------------------------------------------------------------------------------------------
# One facade over the three pools
# --------------------------------------------------------------------------------------------

class Hung(Exception):
    """A wait for a result ran out of time."""


class PoolFacade:
    """submit/result/map over one pool, and a teardown that never hangs: an orderly shutdown
    bounded in time, then terminate/kill. Used as a context manager."""

    name = ""

    def __init__(self, workers):
        self.workers = workers
        self.teardown_report = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.teardown(orderly=exc_type is None)
        return False

    def processes(self):
        """The multiprocessing.Process objects of the workers (none for threads)."""
        return []

    def threads(self):
        return []

    def teardown(self, orderly=True, orderly_timeout=TEARDOWN_WAIT_S):
        """Shut the pool down; returns (and keeps) a report of how that went."""
        if self.teardown_report is not None:
            return self.teardown_report
        procs, extra = self.processes(), self._snapshot()
        self.orderly_started = orderly
        report = {"orderly": "not tried", "forced": False}
        finished = False
        if orderly:
            start = now()
            try:
                finished = bounded(self._close, orderly_timeout)
                report["orderly"] = ("completed in %.3f s" % (now() - start) if finished else
                                     "blocked: not finished after %g s" % orderly_timeout)
            except Exception as exc:
                report["orderly"] = "failed: " + describe(exc)
        if not finished:
            report["forced"] = True
            try:
                if not bounded(self._force, TEARDOWN_WAIT_S):
                    report["force_problem"] = "forced shutdown blocked"
            except Exception as exc:
                report["force_problem"] = describe(exc)
            for proc in procs:
                try:
                    if proc.is_alive():
                        proc.kill()
                except (OSError, ValueError, AssertionError):
                    pass
            for proc in procs:
                proc.join(2.0)
            self._after_force(extra, report)
        report["processes_alive"] = sum(1 for p in procs if p.is_alive())
        report["threads_alive"] = sum(1 for t in self.threads() if t.is_alive())
        self.teardown_report = report
        return report

    def _snapshot(self):
        return None

    def _after_force(self, extra, report):
        pass


class MpPool(PoolFacade):
    name = "mp_pool"

    def __init__(self, workers, initializer=None, initargs=()):
        super().__init__(workers)
        self.pool = multiprocessing.Pool(workers, initializer, initargs)

    def submit(self, fn, *args):
        return self.pool.apply_async(fn, args)

    def result(self, handle, timeout):
        try:
            return handle.get(timeout)
        except multiprocessing.TimeoutError:
            raise Hung() from None

    def map(self, fn, items, chunksize, timeout):
        """chunksize None: Pool.map's default, ceil(len / (4 * workers))."""
        try:
            return self.pool.map_async(fn, items, chunksize).get(timeout)
        except multiprocessing.TimeoutError:
            raise Hung() from None

    def imap(self, fn, items, timeout, chunksize=None):
        """Pool.imap (chunksize None: its default, 1), each result taken as it comes, each
        wait bounded by ``timeout`` (with chunks, imap returns a plain generator, whose
        waits only the scenario's budget bounds); how many results came."""
        if chunksize is not None:
            return sum(1 for _ in self.pool.imap(fn, items, chunksize))
        results = self.pool.imap(fn, items)
        count = 0
        while True:
            try:
                results.next(timeout)
            except StopIteration:
                return count
            except multiprocessing.TimeoutError:
                raise Hung() from None
            count += 1

    def processes(self):
        return list(self.pool._pool)

    def _close(self):
        self.pool.close()
        self.pool.join()

    def _force(self):
        self.pool.terminate()


class MpThreadPool(MpPool):
    """multiprocessing.pool.ThreadPool: Pool's API (and its chunked map) on threads."""
    name = "mp_thread_pool"

    def __init__(self, workers):
        PoolFacade.__init__(self, workers)
        self.pool = multiprocessing.pool.ThreadPool(workers)

    def processes(self):
        return []


class ExecutorFacade(PoolFacade):
    factory = None

    def __init__(self, workers, initializer=None, initargs=()):
        super().__init__(workers)
        self.ex = self.factory(max_workers=workers, initializer=initializer, initargs=initargs)

    def submit(self, fn, *args):
        return self.ex.submit(fn, *args)

    def result(self, handle, timeout):
        try:
            return handle.result(timeout)
        except cf.TimeoutError:
            raise Hung() from None

    def map(self, fn, items, chunksize, timeout):
        """chunksize None: the executor's default (1)."""
        kwargs = {} if chunksize is None else {"chunksize": chunksize}
        try:
            return list(self.ex.map(fn, items, timeout=timeout, **kwargs))
        except cf.TimeoutError:
            raise Hung() from None

    def _close(self):
        self.ex.shutdown(wait=True)

    def _force(self):
        try:
            self.ex.shutdown(wait=False, cancel_futures=True)
        except TypeError:  # Python 3.8: no cancel_futures
            self.ex.shutdown(wait=False)


class ProcessExecutor(ExecutorFacade):
    name = "process_executor"
    factory = cf.ProcessPoolExecutor

    def processes(self):
        return list((self.ex._processes or {}).values())

    def _force(self):
        # A second shutdown() racing a blocked shutdown(wait=True) trips over the closed
        # wakeup pipe on 3.8; killing the workers (done next) is what unblocks it anyway.
        if not self.orderly_started:
            super()._force()

    def _snapshot(self):
        # shutdown() drops these references, so take them first.
        return (getattr(self.ex, "_executor_manager_thread", None)  # 3.9+
                or getattr(self.ex, "_queue_management_thread", None))  # 3.8

    def _after_force(self, manager, report):
        if manager is not None:
            manager.join(TEARDOWN_WAIT_S)
            report["manager_thread_alive"] = manager.is_alive()


class ThreadExecutor(ExecutorFacade):
    name = "thread_executor"
    factory = cf.ThreadPoolExecutor

    def threads(self):
        return list(self.ex._threads)


FACADES = {cls.name: cls for cls in (MpPool, ProcessExecutor, ThreadExecutor, MpThreadPool)}


def make_pool(variant, workers, initializer=None, initargs=()):
    if initializer is None:
        return FACADES[variant](workers)
    return FACADES[variant](workers, initializer, initargs)


def warm_up(pool, workers, hold_s=0.05, timeout=BENCH_WAIT_S):
    """One held no-op per worker, so that every worker is up; the pids that answered."""
    handles = [pool.submit(hold_pid, hold_s) for _ in range(workers)]
    return {pool.result(h, timeout) for h in handles}


class WarmPools:
    """One warm pool per variant and worker count, made on first use and kept for every
    scenario after it (as a program keeps its pool), all torn down on exit."""

    def __init__(self, workers):
        self.workers = workers
        self.pools = {}

    def __enter__(self):
        return self

    def get(self, variant, workers=None):
        key = (variant, self.workers if workers is None else workers)
        if key not in self.pools:
            pool = make_pool(variant, key[1])
            self.pools[key] = pool
            warm_up(pool, key[1])
        return self.pools[key]

    def __exit__(self, exc_type, exc, tb):
        for pool in self.pools.values():
            pool.teardown(orderly=exc_type is None)
        return False


# --------------------------------------------------------------------------------------------
# Configuration, errors, repeats
# --------------------------------------------------------------------------------------------

class Config:
    def __init__(self, spec):
        self.spec = spec
        merged = dict(DEFAULT_SPEC)
        merged.update(spec)
        self.quick = bool(merged["quick"])
        self.workers = int(merged["workers"])
        self.repeats = max(1, int(merged["repeats"]))
        self.scenarios = list(merged["scenarios"])
        self.variants = list(merged.get("variants", VARIANTS))
        self.in_flight_tasks = int(merged["in_flight_tasks"])
        self.map_items = int(merged["map_items"])
        if self.quick and "map_items" not in spec:
            self.map_items = min(self.map_items, 10000)
        self.map_repeats = max(1, int(merged.get("map_repeats", self.repeats)))
        self.map_skip = [str(key) for key in merged.get("map_skip", [])]
        # Maps that send one item per message cost the same per item at any length: they run
        # on fewer items, so that they do not take most of the run.
        self.per_item_map_items = min(self.map_items, int(merged.get(
            "per_item_map_items", 2000 if self.quick else 10000)))
        self.imap_items = int(merged.get("imap_items", self.per_item_map_items))
        self.imap_skip = [str(key) for key in merged.get("imap_skip", [])]
        self.burst_items = int(merged.get("burst_items", 20000 if self.quick else 100000))
        self.cpu_variants = [v for v in merged.get("cpu_variants", self.variants)
                             if v in self.variants]
        self.pools = None  # the kept pools, set while the suite runs
        self.payload_bytes = [int(b) for b in merged["payload_bytes"]]
        self.cpu = list(merged["cpu"])
        self.fault_timeout_s = float(merged["fault_timeout_s"])
        self.fault_alloc_mib = int(merged.get("fault_alloc_mib", ALLOC_GUARD >> 20))
        self.spawns = int(merged.get("spawns", 10 if self.quick else 20))
        limit = merged.get("fault_memory_limit_mib")
        self.fault_memory_limit_mib = int(limit) if limit else None
        self.io = dict(merged.get("io") or {})
        self.round_trips = int(merged.get("round_trips", 200 if self.quick else 2000))
        self.payload_round_trips = int(merged.get("payload_round_trips",
                                                  30 if self.quick else 200))
        self.messages = int(merged.get("messages", 20000 if self.quick else 200000))
        capped = min(self.repeats, 3) if self.quick else self.repeats
        self.cpu_repeats = capped
        self.memory_repeats = capped
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        for name in self.variants:
            if name not in FACADES:
                raise ValueError("unknown variant %r" % name)

    def effective(self):
        keys = ("workers", "repeats", "quick", "scenarios", "variants", "in_flight_tasks",
                "map_items", "map_repeats", "map_skip", "per_item_map_items", "imap_items",
                "imap_skip", "burst_items", "payload_bytes",
                "round_trips", "payload_round_trips",
                "cpu_variants", "cpu_repeats", "memory_repeats", "fault_timeout_s",
                "fault_alloc_mib", "fault_memory_limit_mib", "spawns")
        return {k: getattr(self, k) for k in keys}


ERRORS = []


def record_error(scenario, variant, exc):
    message = describe(exc)
    ERRORS.append({"scenario": scenario, "variant": variant, "error": message,
                   "traceback": traceback.format_exc(limit=6)})
    log("%s %s FAILED: %s" % (scenario, variant, message))
    return message


def interleaved(cfg, scenario, measure, keys=None, repeats=None):
    """measure(key) once per repeat for every key (default: every variant), the keys
    interleaved within each repeat. Returns ({key: [sample, ...]}, {key: error}); a key
    that fails is dropped from later repeats."""
    keys = list(cfg.variants if keys is None else keys)
    repeats = cfg.repeats if repeats is None else repeats
    samples = {k: [] for k in keys}
    failed = {}
    steps, step = repeats * len(keys), 0
    for r in range(repeats):
        for key in keys:
            step += 1
            if key in failed:
                continue
            PROGRESS.report((step - 1) / steps, "%s %s, repeat %d of %d"
                            % (scenario, key_name(key), r + 1, repeats))
            try:
                samples[key].append(measure(key))
            except Exception as exc:
                failed[key] = record_error(scenario, key, exc)
    return samples, failed


def key_name(key):
    return " ".join(str(part) for part in key) if isinstance(key, tuple) else str(key)


def column(samples, key):
    return [s[key] for s in samples]


def cells(samples, failed, build):
    """One result cell per key: build(samples), or the error."""
    out = {}
    for key, got in samples.items():
        if key in failed:
            out[key] = {"error": failed[key], "completed_repeats": len(got)}
        else:
            out[key] = build(key, got)
    return out


# --------------------------------------------------------------------------------------------
# Scenarios: each returns {variant: cell}
# --------------------------------------------------------------------------------------------

def startup_sample(variant, workers):
    """Microseconds from constructing a pool of `workers` to the first result of a no-op, and
    of the shutdown that follows."""
    start = now()
    with make_pool(variant, workers) as pool:
        pool.result(pool.submit(noop), BENCH_WAIT_S)
        started = now() - start
        stop = now()
        pool.teardown()
        stopped = now() - stop
    return {"startup": started * 1e6, "shutdown": stopped * 1e6}


def scenario_startup(cfg):
    def measure(variant):
        return startup_sample(variant, cfg.workers)

    samples, failed = interleaved(cfg, "startup", measure)
    return cells(samples, failed, lambda v, s: dict(
        summary(column(s, "startup"), "us"), workers=cfg.workers,
        shutdown=summary(column(s, "shutdown"), "us")))


# The one-off worker of each variant that has one, by the variant it is filed under.
SPAWN_KINDS = {"mp_pool": multiprocessing.Process, "thread_executor": threading.Thread}


def spawn_sample(kind, n):
    """Microseconds of each of ``n`` start + join of a one-off ``kind`` running a no-op, after
    one untimed; their median."""
    times = []
    for i in range(n + 1):
        start = now()
        worker = kind(target=noop)
        worker.start()
        worker.join(BENCH_WAIT_S)
        if worker.is_alive():
            raise Hung()
        if i:
            times.append(now() - start)
    return statistics.median(times) * 1e6


def scenario_spawn(cfg):
    keys = [v for v in cfg.variants if v in SPAWN_KINDS]
    samples, failed = interleaved(cfg, "spawn", lambda v: spawn_sample(SPAWN_KINDS[v], cfg.spawns),
                                  keys=keys)
    return cells(samples, failed, lambda v, s: summary(s, "us"))


def timed_round_trips(pool, n, fn, *args):
    """Seconds per submit-and-wait of fn(*args), n times, after a few untimed ones."""
    times = []
    for i in range(WARMUP_ROUND_TRIPS + n):
        start = now()
        pool.result(pool.submit(fn, *args), BENCH_WAIT_S)
        if i >= WARMUP_ROUND_TRIPS:
            times.append(now() - start)
    return times


def scenario_round_trip(cfg):
    n = cfg.round_trips

    def measure(variant):
        times = timed_round_trips(cfg.pools.get(variant), n, noop)
        times.sort()
        return {"median": statistics.median(times) * 1e6, "p99": quantile(times, 0.99) * 1e6}

    samples, failed = interleaved(cfg, "round_trip", measure)
    return cells(samples, failed, lambda v, s: dict(
        summary(column(s, "median"), "us"), tasks_per_repeat=n,
        p99=summary(column(s, "p99"), "us")))


def scenario_in_flight(cfg):
    n = cfg.in_flight_tasks

    def measure(variant):
        pool = cfg.pools.get(variant)
        start = now()
        handles = [pool.submit(noop) for _ in range(n)]
        submitted = now()
        deadline = start + BENCH_WAIT_S
        for h in handles:
            pool.result(h, max(0.0, deadline - now()))
        elapsed = now() - start
        return {"rate": n / elapsed, "submit": (submitted - start) / n * 1e6}

    samples, failed = interleaved(cfg, "in_flight", measure)
    return cells(samples, failed, lambda v, s: dict(
        summary(column(s, "rate"), "tasks_per_s"), tasks=n,
        submit_us_per_task=summary(column(s, "submit"), "us")))


def map_runs(cfg):
    """Every way of mapping measured, as (key, variant, call, chunksize argument, effective
    chunksize, items, is the API's default, follows the docs' advice): each pool's default,
    and the chunk size the docs recommend where the default is one item per message."""
    n, few, workers = cfg.map_items, cfg.per_item_map_items, cfg.workers
    chunks = max(1, math.ceil(n / (4 * workers)))
    runs = [
        ("pool_map", "mp_pool", "Pool.map(f, items)", None, chunks, n, True, True),
        ("executor_map_chunksize_1", "process_executor", "ProcessPoolExecutor.map(f, items)",
         None, 1, few, True, False),
        ("executor_map_chunksize_large", "process_executor",
         "ProcessPoolExecutor.map(f, items, chunksize=%d)" % chunks, chunks, chunks, n, False,
         True),
        ("thread_executor_map", "thread_executor", "ThreadPoolExecutor.map(f, items)", None, 1,
         few, True, True),
        ("thread_pool_map", "mp_thread_pool", "multiprocessing.pool.ThreadPool.map(f, items)",
         None, chunks, n, True, True),
    ]
    return [r for r in runs
            if (r[1] in cfg.variants or r[1] == "mp_thread_pool") and r[0] not in cfg.map_skip]


def map_sample(pool, items, n, chunksize):
    """Items per second of one ``map`` of ``identity`` over ``items`` (``n`` of them)."""
    start = now()
    got = pool.map(identity, items, chunksize, BENCH_WAIT_S)
    rate = n / (now() - start)
    if len(got) != n:
        raise RuntimeError("map returned %d results for %d items" % (len(got), n))
    return rate


def scenario_map_noop(cfg):
    runs = map_runs(cfg)

    def measure(key):
        _, variant, _, arg, _, n, _, _ = next(r for r in runs if r[0] == key)
        return map_sample(cfg.pools.get(variant), range(n), n, arg)

    samples, failed = interleaved(cfg, "map_noop", measure, keys=[r[0] for r in runs],
                                  repeats=cfg.map_repeats)
    out = {}
    for key, variant, call, _, effective, n, is_default, advised in runs:
        if key in failed:
            run = {"error": failed[key], "completed_repeats": len(samples[key])}
        else:
            run = dict(summary(samples[key], "items_per_s"), call=call, chunksize=effective,
                       items=n, is_default=is_default, follows_docs=advised)
        out.setdefault(variant, {"runs": {}})["runs"][key] = run
    return out


def imap_runs(cfg):
    """Every imap measured, as (key, variant, call, chunksize argument, effective chunksize,
    is the API's default, follows the docs' advice): each pool's ``imap`` with its default
    chunksize=1, as users write it, and Pool.imap with the large chunks its docs advise for
    long iterables (Pool.map's default ones)."""
    chunks = max(1, math.ceil(cfg.imap_items / (4 * cfg.workers)))
    runs = [
        ("pool_imap", "mp_pool", "Pool.imap(f, items)", None, 1, True, False),
        ("pool_imap_chunked", "mp_pool", "Pool.imap(f, items, chunksize=%d)" % chunks, chunks,
         chunks, False, True),
        ("thread_pool_imap", "mp_thread_pool", "multiprocessing.pool.ThreadPool.imap(f, items)",
         None, 1, True, True),
    ]
    return [r for r in runs
            if (r[1] in cfg.variants or r[1] == "mp_thread_pool") and r[0] not in cfg.imap_skip]


def imap_sample(pool, items, n, chunksize=None):
    """Items per second of one ``imap`` of ``identity`` over ``items`` (``n`` of them), each
    result taken as it comes."""
    start = now()
    got = pool.imap(identity, items, BENCH_WAIT_S, chunksize)
    rate = n / (now() - start)
    if got != n:
        raise RuntimeError("imap yielded %d results for %d items" % (got, n))
    return rate


def scenario_imap_noop(cfg):
    runs = imap_runs(cfg)
    n = cfg.imap_items
    data = list(range(n))

    def measure(key):
        _, variant, _, arg, _, _, _ = next(r for r in runs if r[0] == key)
        return imap_sample(cfg.pools.get(variant), data, n, arg)

    samples, failed = interleaved(cfg, "imap_noop", measure, keys=[r[0] for r in runs],
                                  repeats=cfg.map_repeats)
    out = {}
    for key, variant, call, _, effective, is_default, advised in runs:
        if key in failed:
            run = {"error": failed[key], "completed_repeats": len(samples[key])}
        else:
            run = dict(summary(samples[key], "items_per_s"), call=call, chunksize=effective,
                       items=n, is_default=is_default, follows_docs=advised)
        out.setdefault(variant, {"runs": {}})["runs"][key] = run
    return out


def payload_round_trips(cfg, size):
    """Round trips per repeat of a payload of ``size`` bytes: over 1 MiB, proportionally
    fewer (at least 3), so a large payload costs about what 1 MiB does."""
    k = cfg.payload_round_trips
    if size <= 1 << 20:
        return k
    return max(3, k * (1 << 20) // size)


def scenario_payload(cfg):
    blobs = {size: b"\x5a" * size for size in cfg.payload_bytes}

    def measure(variant):
        pool = cfg.pools.get(variant)
        out = {}
        for size, blob in blobs.items():
            if pool.result(pool.submit(echo, blob), BENCH_WAIT_S) != blob:
                raise RuntimeError("payload of %d bytes came back altered" % size)
            k = payload_round_trips(cfg, size)
            out[size] = statistics.median(timed_round_trips(pool, k, echo, blob)) * 1e6
        return out

    samples, failed = interleaved(cfg, "payload", measure)
    return sized_cells(cfg, samples, failed, list(blobs))


def sized_cells(cfg, samples, failed, sizes):
    """The cells of a payload scenario whose samples are {size: microseconds}."""
    def build(variant, s):
        cells_by_size = {}
        for size in sizes:
            stat = summary(column(s, size), "us")
            med = stat["median_us"]
            cells_by_size[str(size)] = dict(stat, bytes=size, MiB_per_s_both_ways=sig(
                2 * size / (med / 1e6) / (1 << 20)) if med else None)
        return {"round_trips_per_size": {str(size): payload_round_trips(cfg, size)
                                         for size in sizes}, "sizes": cells_by_size}

    return cells(samples, failed, build)


def fresh_block_round_trips(pool, n, fill):
    """Seconds per round trip of a new shared-memory block holding ``fill`` each time (made
    and filled before the clock, closed and unlinked after it), n times, after an untimed one
    (every block is new: there is nothing more to warm)."""
    size = len(fill)
    times = []
    for i in range(1 + n):
        block = shared_memory.SharedMemory(create=True, size=size)
        try:
            block.buf[:size] = fill
            start = now()
            got = pool.result(pool.submit(echo_shared, block.name), BENCH_WAIT_S)
            elapsed = now() - start
            if got != block.name:
                raise RuntimeError("the block of %d bytes came back as another" % size)
        finally:
            block.close()
            block.unlink()
        if i >= 1:
            times.append(elapsed)
    return times


def scenario_shared_memory(cfg):
    sizes = [size for size in cfg.payload_bytes if size > 0]
    fills = {size: b"\x5a" * size for size in sizes}

    def measure(variant):
        pool = cfg.pools.get(variant)
        return {size: statistics.median(fresh_block_round_trips(
            pool, payload_round_trips(cfg, size), fills[size])) * 1e6 for size in sizes}

    samples, failed = interleaved(cfg, "shared_memory", measure,
                                  keys=[v for v in SHARED_MEMORY_VARIANTS if v in cfg.variants])
    return sized_cells(cfg, samples, failed, sizes)


def cpu_jobs(entry):
    kernel, args, tasks = entry["kernel"], list(entry["args"]), int(entry["tasks"])
    if kernel == "primes":
        start, length = args
        return [("primes", (start + i * length, length)) for i in range(tasks)]
    if kernel == "mandel":
        first_row, rows, width, height, max_iter = args
        step = int(entry.get("step", rows))
        return [("mandel", ((first_row + i * step) % height, rows, width, height, max_iter))
                for i in range(tasks)]
    raise ValueError("unknown cpu kernel %r" % kernel)


def cpu_entry(cfg, entry, label):
    """Measure one cpu entry; returns ({"sequential": cell}, {variant: cell})."""
    jobs = cpu_jobs(entry)
    counts = list(range(1, cfg.workers + 1)) + [2 * cfg.workers]
    variants = cfg.cpu_variants
    keys = ["sequential"] + [(v, w) for w in counts for v in variants]
    burst = bool(entry.get("after_burst"))
    if burst:
        keys += [(v, "after_burst") for v in variants]
    totals = {}

    def measure(key):
        if key == "sequential":
            start = now()
            total = sum(run_kernel(job) for job in jobs)
            wall = now() - start
        else:
            # Pools are kept across samples, scenarios and kernels, as a program keeps its
            # pool; each API's default chunks.
            variant, workers = key
            if workers == "after_burst":
                pool = cfg.pools.get(variant)
                pool.map(identity, range(cfg.burst_items), None, BENCH_WAIT_S)
            else:
                pool = cfg.pools.get(variant, workers)
            start = now()
            results = pool.map(run_kernel, jobs, None, BENCH_WAIT_S)
            wall = now() - start
            total = sum(results)
        totals.setdefault(key, set()).add(total)
        return wall

    samples, failed = interleaved(cfg, "cpu %s" % label, measure, keys, cfg.cpu_repeats)
    about = {"kernel": entry["kernel"], "args": entry["args"], "tasks": len(jobs)}
    expected = totals.get("sequential", set())
    everything = set().union(*totals.values()) if totals else set()
    if "sequential" in failed:
        seq = dict(about, error=failed["sequential"])
        seq_median = None
    else:
        seq = dict(about, **summary(samples["sequential"], "s"))
        seq_median = seq["median_s"]
        seq.update(total=min(expected), agree=len(everything) == 1)
    by_variant = {}
    for variant in variants:
        by_workers = {}
        for workers in counts:
            key = (variant, workers)
            if key in failed:
                by_workers[str(workers)] = {"error": failed[key], "workers": workers}
                continue
            stat = summary(samples[key], "s")
            speedup = seq_median / stat["median_s"] if seq_median and stat["median_s"] else None
            by_workers[str(workers)] = dict(
                stat, workers=workers, oversubscribed=workers > cfg.workers,
                speedup_vs_sequential=sig(speedup) if speedup else None,
                efficiency=sig(speedup / workers) if speedup else None)
        got = set().union(*(totals.get((variant, w), set()) for w in counts))
        by_variant[variant] = dict(about, by_workers=by_workers, totals=sorted(got),
                                   agree=bool(got) and got == expected)
        key = (variant, "after_burst")
        if burst and key in failed:
            by_variant[variant]["after_burst"] = {"error": failed[key]}
        elif burst:
            stat = summary(samples[key], "s")
            speedup = seq_median / stat["median_s"] if seq_median and stat["median_s"] else None
            by_variant[variant]["after_burst"] = dict(
                stat, workers=cfg.workers, burst_items=cfg.burst_items,
                speedup_vs_sequential=sig(speedup) if speedup else None,
                speedup_samples=[sig(seq_median / x) for x in samples[key] if seq_median and x])
    return seq, by_variant


def scenario_cpu(cfg):
    out = {"sequential": {}}
    for v in cfg.cpu_variants:
        out[v] = {}
    for index, entry in enumerate(cfg.cpu):
        label = "%s-%d" % (entry.get("kernel"), index) if isinstance(entry, dict) else str(index)
        label = str(entry.get("label", label)) if isinstance(entry, dict) else label
        try:
            seq, by_variant = cpu_entry(cfg, entry, label)
        except Exception as exc:  # a malformed entry
            message = record_error("cpu", label, exc)
            seq, by_variant = {"error": message}, {v: {"error": message} for v in cfg.cpu_variants}
        out["sequential"][label] = seq
        for variant, cell in by_variant.items():
            out[variant][label] = cell
    return out


def io_settings(cfg):
    """The I/O-bound spec: (service, delay_us, worker counts, tasks per worker, pool needed,
    variants)."""
    io = cfg.io
    variants = [v for v in IO_VARIANTS if v in cfg.variants]
    return (io.get("service"), int(io.get("delay_us", 10000)),
            [int(w) for w in io.get("workers", [2, 16, 64])], int(io.get("tasks_per_worker", 4)),
            int(io.get("pool_needed", 64)), variants)


def io_tasks(service, delay):
    """The waiting tasks by kind: (function, arguments); the socket kind needs the service."""
    kinds = {"sleep": (io_sleep, (delay,))}
    if service:
        kinds["socket"] = (io_ask, (service, delay))
    return kinds


def scenario_io(cfg):
    """Many tasks that mostly wait, at each worker count: tasks/s of 4 * workers tasks
    submitted at once, each sleeping or reading the slow service's answer; then the start-up
    of the pool the waits need, and its memory per worker (in a fresh interpreter)."""
    service, delay, counts, per_worker, needed, variants = io_settings(cfg)
    kinds = io_tasks(service, delay)
    out = {v: {"throughput": {k: {} for k in kinds}} for v in variants}
    for v in variants:
        if "socket" not in kinds:
            out[v]["throughput"]["socket"] = {"error": "the report's slow service did not start"}
    for workers in counts:
        n = workers * per_worker
        pools, broken = {}, {}
        try:
            for v in variants:
                try:
                    pools[v] = make_pool(v, workers)
                    warm_up(pools[v], workers)
                except Exception as exc:
                    broken[v] = record_error("io", "%s/%d" % (v, workers), exc)

            def measure(key):
                variant, kind = key
                pool = pools[variant]
                fn, args = kinds[kind]
                start = now()
                handles = [pool.submit(fn, *args) for _ in range(n)]
                deadline = start + BENCH_WAIT_S
                for h in handles:
                    pool.result(h, max(0.0, deadline - now()))
                return n / (now() - start)

            keys = [(v, k) for v in variants if v not in broken for k in kinds]
            samples, failed = interleaved(cfg, "io %d workers" % workers, measure, keys)
        finally:
            for pool in pools.values():
                pool.teardown()
        for v in variants:
            for k in kinds:
                if v in broken or (v, k) in failed:
                    cell = {"error": broken.get(v) or failed[(v, k)]}
                else:
                    cell = dict(summary(samples[(v, k)], "tasks_per_s"), tasks=n,
                                workers=workers)
                out[v]["throughput"][k][str(workers)] = cell
    samples, failed = interleaved(cfg, "io startup", lambda v: startup_sample(v, needed),
                                  variants)
    for v in variants:
        out[v]["startup"] = ({"error": failed[v]} if v in failed else
                             dict(summary(column(samples[v], "startup"), "us"), workers=needed))
    for v, cell in io_memory(cfg, variants).items():
        out[v]["memory"] = cell
    return out


def io_memory(cfg, variants):
    """Memory per worker of the pool the waits need, measured in a fresh interpreter (see
    scenario_memory); {variant: cell}."""
    try:
        return fresh_child("--io-memory-child", cfg, 60 + 30 * len(variants))
    except Exception as exc:
        message = record_error("io", "memory", exc)
        return {v: {"error": message} for v in variants}


def descendants(pid):
    """Every process descended from pid, from /proc (empty where there is none)."""
    children = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_pss_kb(pid):
    """The summed PSS of pid and its descendants in kB (VmRSS where PSS is missing): what they
    add to the machine, pages shared by k processes counted 1/k in each."""
    total = 0
    for p in [pid] + descendants(pid):
        mem = proc_memory(p)
        total += mem["pss_kB"] if mem["pss_kB"] is not None else (mem["rss_kB"] or 0)
    return total


def io_memory_child_main(raw):
    """--io-memory-child: in this fresh interpreter, for each variant, the growth of the summed
    PSS of this process and its descendants when a pool of the needed size has run a batch of
    sleeping tasks, per worker; prints JSON."""
    cfg = Config(json.loads(raw))
    _, delay, _, per_worker, needed, variants = io_settings(cfg)
    result = {}
    for v in variants:
        try:
            gc.collect()
            before = tree_pss_kb(os.getpid())
            with make_pool(v, needed) as pool:
                handles = [pool.submit(io_sleep, delay) for _ in range(needed * per_worker)]
                pids = {pool.result(h, BENCH_WAIT_S) for h in handles}
                after = tree_pss_kb(os.getpid())
            result[v] = dict(summary([(after - before) / needed], "kB_per_worker"),
                             workers=needed, task_pids=len(pids))
        except Exception as exc:
            result[v] = {"error": record_error("io", "memory/" + v, exc)}
    print(json.dumps({"result": result, "errors": ERRORS}))
    return 0


def fresh_child(flag, cfg, timeout):
    """Runs this script again as `flag` with the spec, in a fresh interpreter, for at most
    `timeout` seconds; returns the "result" of the JSON it prints and keeps its "errors"."""
    cmd = [sys.executable, os.path.abspath(__file__), flag, json.dumps(cfg.spec)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError("%s exited with status %d" % (flag, done.returncode))
    got = json.loads(done.stdout)
    ERRORS.extend(got["errors"])
    return got["result"]


def scenario_memory(cfg):
    """Measured in a fresh interpreter: a forked worker's RSS counts the pages it shares
    with its parent, so in this long-running process it would grow with whatever earlier
    scenarios left behind. Falls back to measuring here if the child fails."""
    try:
        return fresh_child("--memory-child", cfg,
                           60 + 10 * cfg.memory_repeats * len(cfg.variants))
    except Exception as exc:
        record_error("memory", None, exc)
        log("memory: measuring in this process instead")
        return measure_memory(cfg, fresh=False)


def memory_child_main(raw):
    """--memory-child: measure_memory() in this fresh interpreter, print JSON."""
    PROGRESS.quiet = True
    result = measure_memory(Config(json.loads(raw)), fresh=True)
    print(json.dumps({"result": result, "errors": ERRORS}))
    return 0


def measure_memory(cfg, fresh):
    def measure(variant):
        gc.collect()
        before = proc_memory(os.getpid())["rss_kB"]
        program_before = tree_pss_kb(os.getpid())
        with make_pool(variant, cfg.workers) as pool:
            answered = warm_up(pool, cfg.workers, hold_s=0.1)
            after = proc_memory(os.getpid())["rss_kB"]
            program_after = tree_pss_kb(os.getpid())
            workers = [proc_memory(p.pid) for p in pool.processes()]
        sample = {"parent_before": before, "parent_increase": (
            after - before if before is not None and after is not None else None),
            "program_increase": program_after - program_before}
        for field in ("rss_kB", "pss_kB", "uss_kB"):
            values = [w[field] for w in workers if w[field] is not None]
            sample[field] = statistics.mean(values) if values else None
        sample["processes"] = len(workers)
        sample["answered"] = len(answered)
        return sample

    samples, failed = interleaved(cfg, "memory", measure, repeats=cfg.memory_repeats)

    def stat(s, key, unit="kB"):
        values = [x for x in column(s, key) if x is not None]
        return summary(values, unit) if values else None

    def build(variant, s):
        cell = {"workers": cfg.workers, "fresh_interpreter": fresh,
                "worker_processes": max(column(s, "processes")),
                "distinct_worker_pids_answering": min(column(s, "answered")),
                "per_worker_rss_kB": stat(s, "rss_kB"),
                "per_worker_pss_kB": stat(s, "pss_kB"),
                "per_worker_uss_kB": stat(s, "uss_kB"),
                "parent_rss_before_kB": stat(s, "parent_before"),
                "parent_rss_increase_kB": stat(s, "parent_increase"),
                "program_pss_increase_kB": stat(s, "program_increase")}
        if variant == "thread_executor":
            cell["worker_processes"] = 0
            cell["distinct_worker_pids_answering"] = None
            cell["note"] = "threads share the parent: their cost is the program's increase"
        return cell

    return cells(samples, failed, build)


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------

def settle(pool, handle, deadline, t0, expect=None, check=False):
    """Wait for one task until deadline: {"kind", "outcome", "after_s"} (after_s from t0)."""
    try:
        value = pool.result(handle, max(0.0, deadline - now()))
    except Hung:
        return {"kind": "hung", "outcome": "hung: no result after %.1f s" % (now() - t0),
                "after_s": None}
    except BrokenProcessPool as exc:
        return {"kind": "broken_pool", "outcome": describe(exc), "after_s": sig(now() - t0)}
    except Exception as exc:
        return {"kind": "raised", "outcome": describe(exc), "after_s": sig(now() - t0)}
    kind = "wrong_result" if check and value != expect else "returned"
    out = {"kind": kind, "outcome": "returned " + repr(value)[:200], "after_s": sig(now() - t0)}
    if isinstance(value, dict):  # the memory fault's report
        out["value"] = value
    return out


def fault_wait_s(fault, timeout):
    """How long a trial waits for a result: the spec's timeout, but long enough for the
    guarded allocation, which always ends, to finish."""
    return max(timeout, MEMORY_FAULT_WAIT_S) if fault == "memory" else timeout


def fault_trial(variant, fault, workers, timeout, alloc_mib, emit=lambda state: None,
                limit_mib=None):
    """A faulty task next to 2*workers healthy ones, then one more healthy task; every
    wait bounded by fault_wait_s(). emit(state) is called after each stage (for a child).
    With ``limit_mib``, the memory fault meets that address-space limit: each worker of a
    process variant's, set by the pool's initializer, or this whole process's for threads
    (run it in a child: the limit stays)."""
    timeout = fault_wait_s(fault, timeout)
    pool_args = ()
    if fault == "memory" and limit_mib:
        if variant in THREAD_VARIANTS:
            limit_address_space(limit_mib << 20)
        else:
            pool_args = (limit_address_space, (limit_mib << 20,))
    n_others = 2 * workers
    state = {"stage": "starting", "healthy_tasks": n_others, "faulty": None, "others": None,
             "next_task": None, "recovery_s": None, "workers_replaced": None, "shutdown": None}
    with make_pool(variant, workers, *pool_args) as pool:
        warm_up(pool, workers, timeout=timeout)
        pids_before = {p.pid for p in pool.processes()}
        state.update(stage="submitting", submitted_at_epoch=time.time())
        emit(state)
        t0 = now()
        faulty = pool.submit(FAULT_TASKS[fault], alloc_mib << 20)
        others = [pool.submit(healthy, i) for i in range(n_others)]
        deadline = t0 + timeout
        state["faulty"] = settle(pool, faulty, deadline, t0)
        state["stage"] = "faulty settled"
        emit(state)
        outcomes = [settle(pool, h, deadline, t0, i * i, True) for i, h in enumerate(others)]
        failures = {}
        for o in outcomes:
            if o["kind"] != "returned":
                failures[o["outcome"]] = failures.get(o["outcome"], 0) + 1
        state["others"] = {"submitted": n_others,
                           "succeeded": sum(o["kind"] == "returned" for o in outcomes),
                           "failures": failures}
        emit(state)
        submitted = now()
        try:
            nxt = settle(pool, pool.submit(healthy, n_others), submitted + timeout, t0,
                         n_others * n_others, True)
        except Exception as exc:  # submit itself refused (e.g. BrokenProcessPool)
            nxt = {"kind": "submit_refused", "outcome": describe(exc), "after_s": None}
        nxt["ok"] = nxt["kind"] == "returned"
        nxt["submitted_after_s"] = sig(submitted - t0)
        state["next_task"] = nxt
        state["recovery_s"] = nxt["after_s"] if nxt["ok"] else None
        if pids_before:
            state["workers_replaced"] = len({p.pid for p in pool.processes()} - pids_before)
        state["stage"] = "measured"
        emit(state)
        state["shutdown"] = pool.teardown(orderly=True, orderly_timeout=min(0.5, timeout))
    state["stage"] = "done"
    state["summary"] = summarize_fault(state)
    emit(state)
    return state


def summarize_fault(state):
    faulty, others, nxt = state["faulty"], state["others"], state["next_task"]
    parts = ["faulty task: " + (faulty["outcome"] if faulty else "no outcome")]
    if others:
        parts.append("healthy tasks: %d/%d ok" % (others["succeeded"], others["submitted"]))
    if nxt:
        parts.append("next task: " + ("ok after %.3g s" % nxt["after_s"] if nxt["ok"]
                                      else nxt["outcome"]))
    if state.get("shutdown"):
        parts.append("orderly shutdown " + state["shutdown"]["orderly"])
    process = state.get("process")
    if process:
        parts.append("program: " + process["fate"])
    return "; ".join(parts)


def signal_name(number):
    try:
        return signal.Signals(number).name
    except ValueError:
        return "signal %d" % number


def fault_trial_in_child(variant, fault, workers, timeout, alloc_mib, limit_mib=None):
    """Run fault_trial in a child interpreter that prints its state as JSON lines; report
    how far it got and how it ended."""
    args = json.dumps({"variant": variant, "fault": fault, "workers": workers,
                       "timeout": timeout, "alloc_mib": alloc_mib, "limit_mib": limit_mib})
    cmd = [sys.executable, os.path.abspath(__file__), "--fault-child", args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    lines, err_tail = queue.Queue(), []

    def pump_stdout():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def pump_stderr():
        for line in proc.stderr:
            err_tail.append(line)
            del err_tail[:-20]

    for target in (pump_stdout, pump_stderr):
        threading.Thread(target=target, daemon=True).start()
    hard_deadline = now() + 3 * fault_wait_s(fault, timeout) + 30
    state, done_at, eof_epoch, killed = None, None, None, False
    try:
        while True:
            limit = done_at + CHILD_EXIT_GRACE_S if done_at is not None else hard_deadline
            try:
                line = lines.get(timeout=max(0.0, limit - now()))
            except queue.Empty:
                break
            if line is None:
                eof_epoch = time.time()
                break
            try:
                state = json.loads(line)
            except ValueError:
                continue
            if state.get("stage") == "done":
                done_at = now()
        try:
            rc = proc.wait(timeout=CHILD_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            killed = True
    finally:  # never leave the child behind, even when interrupted
        if killed or proc.poll() is None:
            proc.kill()
            rc = proc.wait(timeout=10)
    if killed and done_at is not None:
        fate = ("trial finished, but the interpreter could not exit (it joins the executor's "
                "threads at exit); killed after %g s" % CHILD_EXIT_GRACE_S)
    elif killed:
        fate = "stopped making progress; killed"
    elif rc < 0:
        fate = "whole program died: " + signal_name(-rc)
    elif rc == 0:
        fate = "exited normally"
    else:
        fate = "exited with status %d" % rc
    state = state or {"stage": "not started", "healthy_tasks": 2 * workers}
    state.pop("summary", None)
    died = rc < 0 and not killed
    if state.get("faulty") is None:
        lost_after = None
        if died and eof_epoch and state.get("submitted_at_epoch"):
            lost_after = sig(eof_epoch - state["submitted_at_epoch"])
        state["faulty"] = {"kind": "program_died" if died else "unknown", "outcome": fate,
                           "after_s": lost_after}
    if state.get("others") is None:
        n = state["healthy_tasks"]
        state["others"] = {"submitted": n, "succeeded": 0, "failures": {"lost: " + fate: n}}
    if state.get("next_task") is None:
        state["next_task"] = {"kind": "not_run", "ok": False, "outcome": "not run: " + fate,
                              "after_s": None, "submitted_after_s": None}
        state["recovery_s"] = None
    state["process"] = {"ran_in_child": True, "returncode": rc, "killed_by_parent": killed,
                        "fate": fate, "stderr_tail": "".join(err_tail)[-600:]}
    state["summary"] = summarize_fault(state)
    return state


def scenario_faults(cfg):
    out = {v: {} for v in cfg.variants}
    steps = len(FAULTS) * len(cfg.variants)
    for f_index, fault in enumerate(FAULTS):
        for v_index, variant in enumerate(cfg.variants):
            PROGRESS.report((f_index * len(cfg.variants) + v_index) / steps,
                            "faults %s %s" % (variant, fault))
            args = (variant, fault, cfg.workers, cfg.fault_timeout_s, cfg.fault_alloc_mib)
            limit = cfg.fault_memory_limit_mib
            # A limited memory fault runs in a fresh interpreter on every variant: a forked
            # worker's address space starts as its parent's, which this long run has grown.
            in_child = ((variant in THREAD_VARIANTS and fault in THREAD_FAULTS_IN_CHILD)
                        or (fault == "memory" and limit))
            try:
                if in_child:
                    cell = fault_trial_in_child(*args, limit_mib=limit)
                else:
                    cell = fault_trial(*args, limit_mib=limit)
                    cell["process"] = {"ran_in_child": False, "fate": "survived"}
                    cell["summary"] = summarize_fault(cell)
                cell.pop("submitted_at_epoch", None)
                log("faults %s %s: %s" % (variant, fault, cell["summary"]))
            except Exception as exc:
                cell = {"error": record_error("faults", "%s/%s" % (variant, fault), exc)}
            out[variant][fault] = cell
    return out


def fault_child_main(raw):
    """--fault-child: run one trial, printing the state as a JSON line after each stage."""
    PROGRESS.quiet = True
    args = json.loads(raw)

    def emit(state):
        print(json.dumps(state), flush=True)

    fault_trial(args["variant"], args["fault"], int(args["workers"]), float(args["timeout"]),
                int(args["alloc_mib"]), emit, args.get("limit_mib"))
    return 0  # then exit normally: that may block on a hung thread, which the parent sees


# --------------------------------------------------------------------------------------------
# Messages between two processes (not in the default list: the spec names it)
# --------------------------------------------------------------------------------------------

MESSAGE_VARIANTS = ("mp_queue", "mp_pipe")


def messages_producer(channel, kind, n):
    put = channel.put if kind == "mp_queue" else channel.send
    put(-1)
    for i in range(n):
        put(i)
    put(None)


def messages_sample(kind, n):
    """Messages per second from a fresh child process to this one, marker to sentinel."""
    if kind == "mp_queue":
        channel = multiprocessing.Queue()
        get, theirs = channel.get, channel
    else:
        here, theirs = multiprocessing.Pipe()
        get = here.recv
    child = multiprocessing.Process(target=messages_producer, args=(theirs, kind, n))
    child.start()
    try:
        if get() != -1:
            raise RuntimeError("the producer's first message is not the marker")
        start = now()
        count = 0
        while get() is not None:
            count += 1
        elapsed = now() - start
    finally:
        child.join(BENCH_WAIT_S)
    if count != n:
        raise RuntimeError("%d messages arrived, not %d" % (count, n))
    return n / elapsed


def scenario_messages(cfg):
    n = cfg.messages
    samples, failed = interleaved(cfg, "messages", lambda kind: messages_sample(kind, n),
                                  keys=MESSAGE_VARIANTS)
    return cells(samples, failed,
                 lambda kind, got: dict(summary(got, "messages_per_s"), messages=n))


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

SCENARIO_FUNCS = {"messages": scenario_messages, "startup": scenario_startup,
                  "spawn": scenario_spawn, "round_trip": scenario_round_trip,
                  "in_flight": scenario_in_flight, "map_noop": scenario_map_noop,
                  "imap_noop": scenario_imap_noop,
                  "payload": scenario_payload, "shared_memory": scenario_shared_memory,
                  "cpu": scenario_cpu, "io": scenario_io,
                  "memory": scenario_memory, "faults": scenario_faults}


def kernel_checks():
    """Hand-checked values that pin the kernel definitions (see the module docstring)."""
    cases = [("primes(0, 100)", primes(0, 100), 25), ("primes(0, 1000)", primes(0, 1000), 168),
             ("primes(-5, 10)", primes(-5, 10), 2),
             # row y=1 of height 2 has ci = 0: c = -2 (|z|^2 stays exactly 4.0), -1, 0 never
             # escape (3 * 50); row 0 escapes after 1, 2, 2 iterations.
             ("mandel(0, 2, 3, 2, 50)", mandel(0, 2, 3, 2, 50), 155)]
    return {name: {"got": got, "expected": want, "ok": got == want} for name, got, want in cases}


def load_average():
    """1, 5 and 15 minute load averages: another job on a shared machine skews everything."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def scenario_budget(cfg, name):
    if name == "faults":
        return 60 + len(FAULTS) * len(cfg.variants) * (
            3 * max(cfg.fault_timeout_s, MEMORY_FAULT_WAIT_S) + 40)
    return 1800.0


def run_suite(spec):
    began = now()
    cfg = Config(spec)
    report = {"python": sys.version, "implementation": platform.python_implementation(),
              "platform": platform.platform(),
              "mp_start_method": multiprocessing.get_start_method(),
              "workers": cfg.workers, "cpu_count": os.cpu_count(), "spec": spec,
              "effective": cfg.effective(), "kernel_checks": kernel_checks(),
              "load_average": {"start": load_average()}, "scenario_wall_s": {},
              "results": {}, "errors": ERRORS}
    PROGRESS.plan(cfg.scenarios)
    with WarmPools(cfg.workers) as pools:
        cfg.pools = pools
        for name in cfg.scenarios:
            if name not in SCENARIO_FUNCS:
                ERRORS.append({"scenario": name, "variant": None, "error": "unknown scenario"})
                continue
            PROGRESS.enter(name)
            start = now()
            try:
                with guard(scenario_budget(cfg, name)):
                    report["results"][name] = SCENARIO_FUNCS[name](cfg)
            except (Exception, ScenarioTimeout) as exc:
                report["results"][name] = {"error": record_error(name, None, exc)}
            report["scenario_wall_s"][name] = sig(now() - start)
            log("%s: done in %.1f s" % (name, now() - start))
        cfg.pools = None
    PROGRESS.current = None
    PROGRESS.report(1.0, "done")
    report["load_average"]["end"] = load_average()
    report["wall_s"] = sig(now() - began)
    return report


def load_spec(path):
    if path == "-":
        return json.load(sys.stdin)
    with open(path) as f:
        return json.load(f)


def reap_leftovers():
    """Last line of defence: no stray worker may outlive us, and nothing may block exit."""
    for child in multiprocessing.active_children():
        try:
            child.kill()
            child.join(2.0)
        except (OSError, ValueError, AssertionError):
            pass
    blockers = [t for t in threading.enumerate()
                if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if blockers:
        log("threads still running at exit (%s); exiting without joining them"
            % ", ".join(t.name for t in blockers))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


# --------------------------------------------------------------------------------------------
# Serving mode: one sample per request, for a caller that interleaves them with its own
# --------------------------------------------------------------------------------------------

def serve_request(line):
    """The request on one line, as ``(op, items)``: ``("map_noop", N)``, ``("imap_noop", N)``
    or ``("quit", None)``.
    Raises ValueError saying why for anything else."""
    try:
        request = json.loads(line)
    except ValueError as exc:
        raise ValueError("not JSON: %s" % exc) from None
    if not isinstance(request, dict):
        raise ValueError("not a JSON object")
    op = request.get("op")
    if op == "quit":
        return op, None
    if op in ("map_noop", "imap_noop"):
        items = request.get("items")
        if isinstance(items, bool) or not isinstance(items, int) or items < 1:
            raise ValueError("items must be a positive integer, not %s" % json.dumps(items))
        return op, items
    raise ValueError("unknown op %s" % json.dumps(op))


def serve_answer(answer):
    """One answer line on stdout, flushed at once (the caller waits for it)."""
    sys.stdout.write(json.dumps(answer, allow_nan=False) + "\n")
    sys.stdout.flush()


def served_map_noop(pool, items):
    """One sample of ``pool_map`` as ``map_noop`` takes it, on the served pool: Pool.map with
    its default chunks over ``items`` integers; the input is a list made before the clock (the
    Rust side copies its input before the clock too)."""
    data = list(range(items))
    return map_sample(pool, data, items, None)


def served_imap_noop(pool, items):
    """One sample of ``pool_imap`` as ``imap_noop`` takes it, on the served pool: Pool.imap
    with its default chunksize=1 over ``items`` integers, each result taken as it comes; the
    input is a list made before the clock."""
    data = list(range(items))
    return imap_sample(pool, data, items)


SERVED = {"map_noop": served_map_noop, "imap_noop": served_imap_noop}


def serve(workers):
    """Serving mode (see the module docstring): answers requests on stdin until its end or a
    ``quit``, then closes the pool. Exit code 0, or 1 if the pool did not start or the caller
    went away."""
    if workers < 1:
        serve_answer({"error": "workers must be at least 1, not %d" % workers})
        return 1
    try:
        with MpPool(workers) as pool:
            try:
                warm_up(pool, workers)
            except Exception as exc:
                serve_answer({"error": "the pool did not start: " + describe(exc)})
                raise
            serve_answer({"ready": True, "workers": workers,
                          "mp_start_method": multiprocessing.get_start_method(),
                          "python": platform.python_version()})
            for line in sys.stdin:
                if not line.strip():
                    continue
                try:
                    op, items = serve_request(line)
                except ValueError as exc:
                    serve_answer({"error": "bad request: %s" % exc})
                    continue
                if op == "quit":
                    break
                try:
                    rate = SERVED[op](pool, items)
                except Exception as exc:
                    log("serve: %s of %d items FAILED: %s" % (op, items, describe(exc)))
                    serve_answer({"error": describe(exc)})
                    continue
                serve_answer({"items_per_s": sig(rate)})
    except BrokenPipeError:
        # The caller stopped reading: nobody is left to answer. Later writes to stdout (at
        # exit) must not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        log("serve: " + describe(exc))
        return 1
    finally:
        reap_leftovers()
    return 0


def main(argv=None):
    # A terminal's Ctrl-C reaches the whole process group, this script and its pools' workers
    # among the Rust processes: end at once, as they do. Python's KeyboardInterrupt would
    # instead rise in every worker and pool thread, and a pool can then hang in its shutdown
    # and outlive the run. Workers forked from here inherit the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    parser = argparse.ArgumentParser(
        description="Benchmark Python's pools as peers of taskpool's Rust pools; prints JSON.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--spec", metavar="SPEC.json", help="the spec file, or - for stdin")
    mode.add_argument("--self-test", action="store_true",
                      help="run a tiny built-in spec quickly and print the JSON")
    mode.add_argument("--serve", metavar="WORKERS", type=int,
                      help="keep a warm multiprocessing.Pool(WORKERS) and answer map and imap "
                           "requests on stdin, one JSON line each (see the docstring)")
    mode.add_argument("--fault-child", help=argparse.SUPPRESS)
    mode.add_argument("--memory-child", help=argparse.SUPPRESS)
    mode.add_argument("--io-memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        return serve(args.serve)
    if args.io_memory_child:
        return io_memory_child_main(args.io_memory_child)
    if args.fault_child:
        return fault_child_main(args.fault_child)
    if args.memory_child:
        return memory_child_main(args.memory_child)
    if args.self_test:
        spec = SELF_TEST_SPEC
    else:
        try:
            spec = load_spec(args.spec)
            if not isinstance(spec, dict):
                raise ValueError("the spec must be a JSON object")
            Config(spec)
        except Exception as exc:
            json.dump({"errors": [{"scenario": None, "variant": None,
                                   "error": "bad spec: " + describe(exc)}]}, sys.stdout)
            print()
            return 2
    report = run_suite(spec)
    json.dump(report, sys.stdout, indent=1, allow_nan=False)
    print()
    sys.stdout.flush()
    reap_leftovers()
    return 0


if __name__ == "__main__":
    sys.exit(main())
