//! What a pool runs: plain functions, and structs that carry serializable state.
//!
//! Users meet two traits here. [`Task`] is implemented by a struct that carries configuration;
//! [`IntoTask`] is what every pool method accepts, and it is implemented for plain functions of
//! one to six arguments and for every [`Task`]. Backends meet [`Job`], the runnable form that
//! [`IntoTask::into_job`] produces, and [`Shipper`], which tells a backend how a job reaches
//! another process.
//!
//! A value becomes a task in two steps, so that a compile error names what is wrong: it is
//! [`Callable`] (a function or a `Task`, whatever its types), and its [`Job`] exists only when
//! its argument and result types are serde types. A function whose argument is not
//! `Serialize` thus fails with serde's own error naming that type, not with "`IntoTask` is not
//! implemented". A third check, [`Job::PORTABLE`], runs when the program is built: a function
//! must be a value that a worker process can rebuild from its type.

use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A task that carries serializable state, for work that needs configuration.
///
/// A plain `fn(A) -> R` needs no trait implementation: pass it to a pool as it is. Implement
/// `Task` when the work needs data beyond its argument; the struct is serialized once per
/// batch and rebuilt inside a worker process, so its state must be [`Serialize`] and
/// [`Deserialize`].
///
/// # Examples
///
/// With `Pool` and `Task` imported from your backend crate and `pool` any backend's pool:
///
/// ```
/// # use taskpool_core::{Pool, Task, TaskError};
/// use serde::{Deserialize, Serialize}; // serde = { version = "1", features = ["derive"] }
///
/// #[derive(Serialize, Deserialize)]
/// struct Scale {
///     factor: u64,
/// }
///
/// impl Task for Scale {
///     type Input = u64;
///     type Output = u64;
///
///     fn run(&self, x: u64) -> u64 {
///         x * self.factor
///     }
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2)?;
///
/// assert_eq!(pool.map(Scale { factor: 3 }, 1..=3)?, [3, 6, 9]);
/// # Ok::<(), TaskError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Task`",
    label = "not a `Task`",
    note = "a struct task implements `Task` and derives `Serialize` and `Deserialize` (serde with its `derive` feature)",
    note = "a plain function needs no `Task` implementation: pass the function itself"
)]
pub trait Task: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The argument of one call.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The result of one call.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Runs the task on one input.
    fn run(&self, input: Self::Input) -> Self::Output;
}

/// The runnable form of a task, as a backend sees it.
///
/// This trait is sealed: [`IntoTask`] produces it from a function or a [`Task`], and no other
/// type implements it.
/// A backend that runs jobs in its own threads only calls [`Job::run`]; a backend that runs
/// them elsewhere asks [`Job::ship`] how the job travels.
pub trait Job: sealed::Sealed + Send + Sync + 'static {
    /// The argument of one call.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The result of one call.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// `()`, or a compile error when the job is a function that a worker process cannot
    /// rebuild from its type alone: a fn pointer, or a closure that captures data.
    ///
    /// Every pool method that accepts a task evaluates it in its own body
    /// (`let () = <T::Job as Job>::PORTABLE;`), so that the error names the line that called
    /// the method. It is checked on every backend, so that a program that builds with one
    /// builds with all. Constants of generic code are evaluated when the program is built
    /// (`cargo build`, `cargo test`), not by `cargo check`.
    ///
    /// # Examples
    ///
    /// A backend's method that takes a task:
    ///
    /// ```
    /// use taskpool_core::IntoTask;
    /// use taskpool_core::backend::Job;
    ///
    /// fn run_here<M, T: IntoTask<M>>(task: T, input: T::Input) -> T::Output {
    ///     let () = <T::Job as Job>::PORTABLE;
    ///     task.into_job().run(input)
    /// }
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// assert_eq!(run_here(square, 7), 49);
    /// ```
    const PORTABLE: ();

    /// Runs the job on one input.
    fn run(&self, input: Self::Input) -> Self::Output;

    /// Tells `shipper` what this job is made of: a stateless job (a plain function, a zero-sized
    /// value that a worker in the same executable can name by its type alone) or a stateful one
    /// that travels serialized.
    fn ship<S: Shipper>(&self, shipper: S) -> S::Shipped;
}

mod sealed {
    /// Only this crate's job types implement [`super::Job`]: a backend trusts that a job
    /// shipped as stateless really is a value it may rebuild from its type alone.
    #[allow(unreachable_pub)]
    pub trait Sealed {}

    impl<T> Sealed for super::TaskJob<T> {}
    impl<F, Args, R> Sealed for super::FnJob<F, Args, R> {}
}

/// Visits a [`Job`] to learn how it crosses a process boundary.
///
/// Implemented by backends that run jobs in other processes; see [`Job::ship`].
pub trait Shipper {
    /// What the visit produces, for example a function address and encoded state.
    type Shipped;

    /// The job is a zero-sized, copyable value: a plain function or a closure that captures
    /// nothing. A worker running the same executable can rebuild it from its type alone.
    fn stateless<J: Job + Copy>(self) -> Self::Shipped;

    /// The job carries state and travels serialized.
    fn stateful<J: Job + Serialize + DeserializeOwned>(self, job: &J) -> Self::Shipped;
}

/// Converts something callable into a [`Job`]: what every pool method accepts.
///
/// Implemented for every [`Task`] and for plain functions and non-capturing closures of one to
/// six arguments whose argument and result types implement serde's `Serialize` and
/// `DeserializeOwned` (and are `Send + 'static`). A function of several arguments takes its
/// input as a tuple, which is how a pool's `starmap` works. The `Marker` parameter only keeps
/// these implementations apart; callers never name it.
///
/// # Examples
///
/// With `pool` any backend's pool:
///
/// ```
/// # use taskpool_core::{Pool, TaskError};
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2)?;
///
/// assert_eq!(pool.map(square, 1..=3)?, [1, 4, 9]);
/// assert_eq!(pool.map(add, [(1, 2), (3, 4)])?, [3, 7]);
/// assert_eq!(pool.map(|s: String| s.len(), ["ab".to_string()])?, [2]);
/// # Ok::<(), TaskError>(())
/// ```
///
/// # What is not a task
///
/// Each of these fails to compile, with an error that names the cause.
///
/// An argument (or result) type that serde cannot carry: the error is serde's, "the trait
/// bound `Point: Serialize` is not satisfied", with a hint to derive it:
///
/// ```compile_fail,E0277
/// # use taskpool_core::Pool;
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// fn norm(p: Point) -> f64 {
///     p.x.hypot(p.y)
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
///
/// pool.map(norm, [Point { x: 3.0, y: 4.0 }]);
/// ```
///
/// A result type likewise:
///
/// ```compile_fail,E0277
/// # use taskpool_core::Pool;
/// struct Report(String);
///
/// fn check(x: u64) -> Report {
///     Report(x.to_string())
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
///
/// pool.apply(check, 1);
/// ```
///
/// A borrowed argument or result (`&str`, `&[u64]`, `&'static str`): values cross to a
/// worker process and back, so they are owned, and the error is "implementation of
/// `Deserialize` is not general enough" (for a borrowed result it may name another of the
/// task's types). Take and return owned types instead: `String`, `Vec<u64>`.
///
/// ```compile_fail
/// # use taskpool_core::Pool;
/// fn words(text: &str) -> usize {
///     text.split_whitespace().count()
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
///
/// pool.map(words, ["a b", "c"]);
/// ```
///
/// ```compile_fail
/// # use taskpool_core::Pool;
/// fn parity(x: u64) -> &'static str {
///     if x % 2 == 0 { "even" } else { "odd" }
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
///
/// pool.map(parity, 1..=3);
/// ```
///
/// A function of no arguments ("`fn() -> String {hello}` is not a task"): give it the
/// argument `()` (`fn hello(_: ()) -> String`) and pass `()`, as `pool.apply(hello, ())`.
///
/// ```compile_fail,E0277
/// # use taskpool_core::Pool;
/// fn hello() -> String {
///     "hello".to_string()
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
///
/// pool.apply(hello, ());
/// ```
///
/// A struct that does not implement [`Task`] ("`Scale` is not a task"):
///
/// ```compile_fail,E0277
/// # use taskpool_core::Pool;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Scale {
///     factor: u64,
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
///
/// pool.map(Scale { factor: 2 }, 1..=3);
/// ```
///
/// A closure that captures data it cannot copy ("the trait bound `String: Copy` is not
/// satisfied", within the closure):
///
/// ```compile_fail,E0277
/// # use taskpool_core::Pool;
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
/// let suffix = String::from("!");
/// pool.map(move |s: String| s + &suffix, ["hi".to_string()]);
/// ```
///
/// A closure that captures data it can copy, or a fn pointer, fails when the program is built
/// ("a task must be a function item or a closure that captures nothing", with the fix), on
/// every backend: a worker process rebuilds a function from its type, and these carry data
/// that their type does not name. See [`Job::PORTABLE`].
///
/// ```compile_fail,E0080
/// # use taskpool_core::Pool;
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
/// let factor = 3;
/// pool.map(move |x: u64| x * factor, 1..=3);
/// ```
///
/// ```compile_fail,E0080
/// # use taskpool_core::Pool;
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
///
/// let f: fn(u64) -> u64 = square;
/// pool.map(f, 1..=3);
/// ```
///
/// Pass such data in the argument instead (`pool.map(scale, items.map(|x| (x, factor)))` with
/// `fn scale(x: u64, factor: u64)`), or in a struct that implements [`Task`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    label = "not a task",
    note = "a task is a function item or a closure that captures nothing, of one to six arguments whose types (and the result's) implement serde's `Serialize` and `DeserializeOwned`, or a struct that implements `Task`"
)]
pub trait IntoTask<Marker>: Sized {
    /// The argument of one call.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The result of one call.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The runnable form.
    type Job: Job<Input = Self::Input, Output = Self::Output>;

    /// Converts `self` into its runnable form.
    fn into_job(self) -> Self::Job;
}

impl<M, T> IntoTask<M> for T
where
    T: Callable<M>,
    T::Job: Job,
{
    type Input = <T::Job as Job>::Input;
    type Output = <T::Job as Job>::Output;
    type Job = T::Job;

    fn into_job(self) -> T::Job {
        self.callable_job()
    }
}

/// A function or a [`Task`], whatever its argument and result types: the first step of
/// [`IntoTask`].
///
/// [`IntoTask`] is implemented for every `Callable` whose [`Callable::Job`] is a [`Job`], which
/// holds when its argument and result types are serde types. Keeping the two steps apart is
/// what lets a compile error name the type that is not `Serialize`. Backends and users name
/// [`IntoTask`]; this trait only shapes the compiler's messages.
///
/// # Examples
///
/// ```
/// use taskpool_core::backend::Callable;
///
/// fn callable<M, T: Callable<M>>(_: &T) {}
///
/// struct NotSerde;
///
/// fn make(_: u64) -> NotSerde {
///     NotSerde
/// }
///
/// callable(&make); // callable, but not a task: its result is not `Serialize`
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a task",
    label = "not a function of one to six arguments, nor a struct that implements `Task`",
    note = "a task is a function item, a closure that captures nothing, or a struct that implements `Task` (with `#[derive(Serialize, Deserialize)]`)",
    note = "a closure that captures data is not a task: pass the data in the task's argument, or put it in a struct that implements `Task`",
    note = "a function of no arguments is not a task: give it the argument `()` (`fn f(_: ()) -> R`) and pass `()`"
)]
pub trait Callable<Marker>: Sized {
    /// The runnable form, a [`Job`] when the types allow it.
    type Job;

    /// Converts `self` into its runnable form.
    fn callable_job(self) -> Self::Job;
}

/// The [`IntoTask`] marker of a struct that implements [`Task`].
#[derive(Debug, Clone, Copy)]
pub enum IsTask {}

impl<T: Task> Callable<IsTask> for T {
    type Job = TaskJob<T>;

    fn callable_job(self) -> TaskJob<T> {
        TaskJob(self)
    }
}

/// The [`Job`] form of a [`Task`].
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskJob<T>(T);

impl<T: Task> Job for TaskJob<T> {
    type Input = T::Input;
    type Output = T::Output;

    const PORTABLE: () = ();

    fn run(&self, input: T::Input) -> T::Output {
        self.0.run(input)
    }

    fn ship<S: Shipper>(&self, shipper: S) -> S::Shipped {
        shipper.stateful(self)
    }
}

impl<T> fmt::Debug for TaskJob<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskJob(..)")
    }
}

/// The [`Job`] form of a plain function or non-capturing closure.
///
/// `Args` is the tuple of the function's argument types and `R` its result.
pub struct FnJob<F, Args, R> {
    f: F,
    signature: PhantomData<fn(Args) -> R>,
}

impl<F: Copy, Args, R> Clone for FnJob<F, Args, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: Copy, Args, R> Copy for FnJob<F, Args, R> {}

impl<F, Args, R> fmt::Debug for FnJob<F, Args, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::any::type_name::<F>())
    }
}

macro_rules! fn_tasks {
    ($( ($($arg:ident),+) => $input:ty; )+) => {$(
        impl<F, $($arg,)+ R> Callable<fn($($arg),+) -> R> for F
        where
            F: Fn($($arg),+) -> R + Copy + Send + Sync + 'static,
        {
            type Job = FnJob<F, ($($arg,)+), R>;

            fn callable_job(self) -> Self::Job {
                FnJob { f: self, signature: PhantomData }
            }
        }

        impl<F, $($arg,)+ R> Job for FnJob<F, ($($arg,)+), R>
        where
            F: Fn($($arg),+) -> R + Copy + Send + Sync + 'static,
            $($arg: Serialize + DeserializeOwned + Send + 'static,)+
            R: Serialize + DeserializeOwned + Send + 'static,
        {
            type Input = $input;
            type Output = R;

            const PORTABLE: () = assert!(
                std::mem::size_of::<F>() == 0,
                "a task must be a function item or a closure that captures nothing, so that a \
                 worker process can rebuild it from its type; this one is a fn pointer or \
                 captures data. Pass the data in the task's argument (a tuple for several), or \
                 put it in a struct that implements `Task`"
            );

            #[allow(non_snake_case, unused_parens)]
            #[inline]
            fn run(&self, input: $input) -> R {
                let ($($arg),+) = input;
                (self.f)($($arg),+)
            }

            fn ship<S: Shipper>(&self, shipper: S) -> S::Shipped {
                shipper.stateless::<Self>()
            }
        }
    )+};
}

fn_tasks! {
    (A) => A;
    (A, B) => (A, B);
    (A, B, C) => (A, B, C);
    (A, B, C, D) => (A, B, C, D);
    (A, B, C, D, E) => (A, B, C, D, E);
    (A, B, C, D, E, G) => (A, B, C, D, E, G);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: u64) -> u64 {
        x * x
    }

    fn add3(a: u8, b: u16, c: u32) -> u64 {
        u64::from(a) + u64::from(b) + u64::from(c)
    }

    #[derive(Serialize, Deserialize)]
    struct Offset(i64);

    impl Task for Offset {
        type Input = i64;
        type Output = i64;
        fn run(&self, x: i64) -> i64 {
            x + self.0
        }
    }

    struct Kind;

    impl Shipper for Kind {
        type Shipped = &'static str;
        fn stateless<J: Job + Copy>(self) -> &'static str {
            "stateless"
        }
        fn stateful<J: Job + Serialize + DeserializeOwned>(self, _: &J) -> &'static str {
            "stateful"
        }
    }

    fn job<M, T: IntoTask<M>>(task: T) -> T::Job {
        task.into_job()
    }

    #[test]
    fn plain_functions_run_and_ship_stateless() {
        let j = job(square);
        assert_eq!(j.run(7), 49);
        assert_eq!(j.ship(Kind), "stateless");
        assert_eq!(std::mem::size_of_val(&j), 0);
        assert_eq!(job(add3).run((1, 2, 3)), 6);
    }

    #[test]
    fn struct_tasks_run_and_ship_stateful() {
        let j = job(Offset(-2));
        assert_eq!(j.run(5), 3);
        assert_eq!(j.ship(Kind), "stateful");
    }
}
