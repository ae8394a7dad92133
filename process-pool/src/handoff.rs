//! How a channel handle reaches another process: serialized like any task argument, and
//! opened there by mapping the same `memfd`.
//!
//! A serialized handle carries the channel's id, its size, what the handle may do, the
//! sending process's id, and where the memory can be found: `(pid, fd)` of the process that
//! serializes it and of the one that created the channel. The receiver opens
//! `/proc/PID/fd/FD` of the first that works (which needs the same user, as any worker of
//! the pool is), maps it, and accepts it only if the header holds the same id: a descriptor
//! number reused for something else is refused. A process that already maps the channel
//! reuses its mapping.
//!
//! Serializing a handle counts it in the sender's peer slot as "handed off"; the receiver
//! registers its own handle, then takes that count back. So from the moment a handle is
//! serialized until it is received, its role still counts, and a process that drops its
//! last handle meanwhile keeps the memory open for the receiver (until the next handle of
//! any channel is made or opened in it with nothing on its way). A handle serialized but
//! never received counts as held by its sender until that process exits.

use std::fmt;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::{Roles, Shared};
use crate::shared_lock::my_pid;
use crate::sys::SharedMemory;

/// The channels this process maps: each by a weak reference, and a strong one while
/// handles it sent are on their way.
struct Known {
    weak: Weak<Shared>,
    keep: Option<Arc<Shared>>,
}

static KNOWN: Mutex<Vec<Known>> = Mutex::new(Vec::new());

fn known() -> std::sync::MutexGuard<'static, Vec<Known>> {
    KNOWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets the channels no handle refers to, and lets go of those whose handed-off handles
/// have all arrived.
fn prune(known: &mut Vec<Known>) {
    for entry in known.iter_mut() {
        if entry.keep.as_ref().is_some_and(|keep| !keep.handing_off()) {
            entry.keep = None;
        }
    }
    known.retain(|entry| entry.weak.strong_count() > 0);
}

/// One handle to a channel: what it may do, counted in the channel's peer table while it
/// lives.
pub(crate) struct Handle {
    shared: Arc<Shared>,
    roles: Roles,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("channel", &self.shared).field("roles", &self.roles).finish()
    }
}

fn table_full() -> std::io::Error {
    std::io::Error::other(format!(
        "more than {} processes hold the queue",
        crate::channel::MAX_PEERS
    ))
}

fn broken() -> std::io::Error {
    std::io::Error::other("the queue's shared memory is broken")
}

impl Handle {
    /// A handle with `roles` to a new channel.
    pub(crate) fn create(bytes: usize, max_messages: u64, roles: Roles) -> std::io::Result<Handle> {
        let shared = Arc::new(Shared::create(bytes, max_messages)?);
        let mut known = known();
        prune(&mut known);
        known.push(Known { weak: Arc::downgrade(&shared), keep: None });
        drop(known);
        Handle::counted(shared, roles)
    }

    fn counted(shared: Arc<Shared>, roles: Roles) -> std::io::Result<Handle> {
        match shared.count(roles, 1, false) {
            Ok(true) => Ok(Handle { shared, roles }),
            Ok(false) => Err(table_full()),
            Err(_) => Err(broken()),
        }
    }

    /// Another handle to the same channel, with `roles`.
    pub(crate) fn with_roles(&self, roles: Roles) -> std::io::Result<Handle> {
        Handle::counted(self.shared.clone(), roles)
    }

    /// Another handle like this one. Counting it cannot fail for want of a slot (this
    /// process has one); if the memory is broken, the handle is simply not counted.
    pub(crate) fn clone_same(&self) -> Handle {
        let _ = self.shared.count(self.roles, 1, false);
        Handle { shared: self.shared.clone(), roles: self.roles }
    }

    pub(crate) fn roles(&self) -> Roles {
        self.roles
    }

    pub(crate) fn channel(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shared.count(self.roles, -1, false);
        // Waiters look at the peers again: this may have been the last on its side.
        self.shared.wake_all();
    }
}

/// A handle as it crosses to another process.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: [u64; 2],
    len: u64,
    roles: u8,
    from: u32,
    /// `(pid, fd)` pairs where the memory is open.
    holders: Vec<(u32, i32)>,
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let me = my_pid();
        let shared = &self.shared;
        match shared.count(self.roles, 1, true) {
            Ok(true) => {}
            Ok(false) => return Err(S::Error::custom(table_full())),
            Err(_) => return Err(S::Error::custom(broken())),
        }
        {
            let mut known = known();
            prune(&mut known);
            let entry =
                known.iter_mut().find(|k| std::ptr::eq(k.weak.as_ptr(), Arc::as_ptr(shared)));
            match entry {
                Some(entry) => entry.keep = Some(shared.clone()),
                None => {
                    known.push(Known { weak: Arc::downgrade(shared), keep: Some(shared.clone()) })
                }
            }
        }
        Wire {
            id: shared.id(),
            len: shared.len() as u64,
            roles: self.roles.bits(),
            from: me,
            holders: vec![(me, shared.fd().as_raw_fd())],
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Handle, D::Error> {
        use serde::de::Error;
        let wire = Wire::deserialize(deserializer)?;
        let roles = Roles::from_bits(wire.roles);
        let shared = open(&wire).map_err(D::Error::custom)?;
        let handle = Handle::counted(shared, roles).map_err(D::Error::custom)?;
        handle.shared.received(wire.from, roles).map_err(|_| D::Error::custom(broken()))?;
        Ok(handle)
    }
}

/// The channel a serialized handle names: this process's mapping if it has one, else the
/// memory opened through a holder.
fn open(wire: &Wire) -> Result<Arc<Shared>, String> {
    let mut known = known();
    prune(&mut known);
    if let Some(shared) = known.iter().filter_map(|k| k.weak.upgrade()).find(|s| s.id() == wire.id)
    {
        return Ok(shared);
    }
    let len = usize::try_from(wire.len).map_err(|e| e.to_string())?;
    let mut why = String::from("no process named holds it");
    for &(pid, fd) in &wire.holders {
        match open_from(pid, fd, len, wire.id) {
            Ok(shared) => {
                let shared = Arc::new(shared);
                known.push(Known { weak: Arc::downgrade(&shared), keep: None });
                return Ok(shared);
            }
            Err(e) => why = e,
        }
    }
    Err(format!("cannot open the queue's shared memory: {why}"))
}

fn open_from(pid: u32, fd: i32, len: usize, id: [u64; 2]) -> Result<Shared, String> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let file = OpenOptions::new().read(true).write(true).open(&path);
    let file = file.map_err(|e| format!("{path}: {e}"))?;
    let fd = OwnedFd::from(file);
    let memory = SharedMemory::adopt(fd.as_raw_fd(), len)
        .ok_or_else(|| format!("{path} is not a sealed memfd of {len} bytes"))?;
    Shared::adopt(memory, fd, id).ok_or_else(|| format!("{path} is another queue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_round_trips_to_the_same_channel_and_a_wrong_id_is_refused() {
        let handle = Handle::create(256, u64::MAX, Roles::BOTH).unwrap();
        let mut bytes = Vec::new();
        crate::codec::encode_into(&handle, &mut bytes).unwrap();
        let back: Handle = crate::codec::decode(&bytes).unwrap();
        assert!(Arc::ptr_eq(&back.shared, &handle.shared), "one mapping per process");
        back.channel().try_put(b"through").unwrap();
        assert_eq!(handle.channel().try_get().unwrap().unwrap(), b"through");

        let me = my_pid();
        let fd = handle.shared.fd().as_raw_fd();
        let other = open_from(me, fd, handle.shared.len(), [1, 2]);
        assert!(other.unwrap_err().contains("another queue"));
        let same = open_from(me, fd, handle.shared.len(), handle.shared.id()).unwrap();
        assert_eq!(same.max_message(), handle.shared.max_message());
    }
}
