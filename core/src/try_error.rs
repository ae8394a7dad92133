//! The error of a `try_map`: a task's own error, told apart from a [`TaskError`].

use std::error::Error;
use std::fmt;

use crate::error::TaskError;

/// Why [`crate::Pool::try_map`] failed: a task returned `Err(E)`, or a task did not return at
/// all ([`TaskError`]: it panicked, crashed, timed out, its value could not travel...).
///
/// `Display` and `source` are those of the error inside, so printing a `TryError` prints the
/// task's own message. [`TryError::Failed`] comes from a [`TaskError`] with `?` (`From`).
/// It is a [`std::error::Error`] when `E` is one; a `String` is not, so with `String` errors
/// turn it into text (`map_err(|e| e.to_string())`, as below) before `?` into a
/// `Box<dyn Error>`.
///
/// # Examples
///
/// A task whose error type is serializable (a `String` here; an enum of your own with
/// `#[derive(Serialize, Deserialize)]` works the same):
///
/// ```
/// # use taskpool_core::{Pool, TaskError, TryError};
/// fn parse(text: String) -> Result<u64, String> {
///     text.trim().parse().map_err(|e| format!("{text:?}: {e}"))
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2)?;
///
/// let lines = ["1", "2", "x", "4"].map(String::from);
/// match pool.try_map(parse, lines) {
///     Err(TryError::Returned(message)) => assert_eq!(message, r#""x": invalid digit found in string"#),
///     Err(TryError::Failed(e)) => panic!("the task did not run to the end: {e}"),
///     Ok(numbers) => panic!("unexpected {numbers:?}"),
/// }
/// let numbers = pool.try_map(parse, ["1", " 2"].map(String::from)).map_err(|e| e.to_string());
/// assert_eq!(numbers, Ok(vec![1, 2]));
/// # Ok::<(), TaskError>(())
/// ```
#[derive(Debug, Clone)]
pub enum TryError<E> {
    /// A task returned this error.
    Returned(E),
    /// A task produced no result: see [`TaskError`].
    Failed(TaskError),
}

impl<E> TryError<E> {
    /// The task's own error, if that is what this is.
    ///
    /// # Examples
    ///
    /// ```
    /// # use taskpool_core::{TaskError, TryError};
    /// assert_eq!(TryError::<&str>::Returned("bad input").returned(), Some("bad input"));
    /// assert_eq!(TryError::<&str>::Failed(TaskError::Cancelled).returned(), None);
    /// ```
    pub fn returned(self) -> Option<E> {
        match self {
            TryError::Returned(e) => Some(e),
            TryError::Failed(_) => None,
        }
    }

    /// The [`TaskError`], if a task produced no result.
    ///
    /// # Examples
    ///
    /// ```
    /// # use taskpool_core::{TaskError, TryError};
    /// let e: TryError<String> = TaskError::ShutDown.into();
    /// assert!(matches!(e.failed(), Some(TaskError::ShutDown)));
    /// ```
    pub fn failed(&self) -> Option<&TaskError> {
        match self {
            TryError::Returned(_) => None,
            TryError::Failed(e) => Some(e),
        }
    }
}

impl<E> From<TaskError> for TryError<E> {
    fn from(e: TaskError) -> Self {
        TryError::Failed(e)
    }
}

impl<E: fmt::Display> fmt::Display for TryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryError::Returned(e) => e.fmt(f),
            TryError::Failed(e) => e.fmt(f),
        }
    }
}

impl<E: Error> Error for TryError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            TryError::Returned(e) => e.source(),
            TryError::Failed(e) => e.source(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::tests::{Layered, layered};

    #[test]
    fn display_and_source_are_the_inner_errors() {
        let returned = TryError::Returned(layered("reading the input", "disk on fire"));
        assert_eq!(returned.to_string(), "reading the input");
        assert_eq!(returned.source().unwrap().to_string(), "disk on fire");
        let failed: TryError<Layered> = TaskError::Cancelled.into();
        assert_eq!(failed.to_string(), TaskError::Cancelled.to_string());
        assert!(matches!(failed.failed(), Some(TaskError::Cancelled)));
        assert!(failed.returned().is_none());
    }
}
