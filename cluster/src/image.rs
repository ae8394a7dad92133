//! Which executable image this process runs, in a form that means the same on every machine.
//!
//! A task names its function by an offset into the executable, so an agent may run it only
//! if it runs the very same image. Device and inode (what the process backend compares
//! between a parent and its workers) mean nothing on another machine; the linker's build id
//! (the `NT_GNU_BUILD_ID` note, a hash of the linked output) does. It is read from the
//! program's notes as the loader mapped them, which works where the file cannot be read
//! (its user may run it but not read it), and is the same as the file's. An executable
//! without one is identified by a SHA-256 of its content instead.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

/// The image id of the running executable: hex, prefixed `b` for a build id and `s` for a
/// content hash, at most 41 characters, safe as a NATS subject token and a consumer name.
pub(crate) fn current() -> Result<&'static str, String> {
    static ID: OnceLock<Result<String, String>> = OnceLock::new();
    ID.get_or_init(|| match loaded_build_id() {
        Some(id) => Ok(id),
        None => of_file("/proc/self/exe").map_err(|e| unidentified("/proc/self/exe", &e)),
    })
    .as_ref()
    .map(String::as_str)
    .map_err(Clone::clone)
}

/// Why the executable at `path` could not be identified, in words a user can act on.
fn unidentified(path: &str, error: &io::Error) -> String {
    let why = if error.kind() == io::ErrorKind::PermissionDenied {
        ": its user may run it but not read it, and an executable without a build id is \
         identified by its content, read from the file: make it readable, or link it with a \
         build id"
    } else {
        ""
    };
    format!("cannot identify the running executable: reading {path}: {error}{why}")
}

/// The image id of the running program from the build id note the loader mapped, as
/// [`of_file`] reads it from the file: a program whose user may run it but not read it has
/// one too.
fn loaded_build_id() -> Option<String> {
    let notes = taskpool_process::remote::program_notes();
    let id = notes.iter().find_map(|segment| find_build_id(segment)).filter(|id| !id.is_empty())?;
    Some(format!("b{}", hex(&id[..id.len().min(20)])))
}

/// The image id of the executable at `path`.
pub(crate) fn of_file(path: &str) -> io::Result<String> {
    let file = File::open(path)?;
    if let Some(id) = build_id(&file)?
        && !id.is_empty()
    {
        return Ok(format!("b{}", hex(&id[..id.len().min(20)])));
    }
    content_hash(file).map(|digest| format!("s{}", hex(&digest[..20])))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn content_hash(mut file: File) -> io::Result<Vec<u8>> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(context.finish().as_ref().to_vec())
}

/// The build id note of a 64-bit little-endian ELF file, if it has one.
fn build_id(file: &File) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 64];
    if file.read_exact_at(&mut header, 0).is_err() {
        return Ok(None);
    }
    // Magic, 64-bit class, little-endian.
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Ok(None);
    }
    let section_table = u64_at(&header, 0x28);
    let entry_size = u64::from(u16_at(&header, 0x3a));
    let count = u64::from(u16_at(&header, 0x3c));
    if entry_size < 64 || count == 0 || count > 4096 {
        return Ok(None);
    }
    let mut table = vec![0u8; (entry_size * count) as usize];
    if file.read_exact_at(&mut table, section_table).is_err() {
        return Ok(None);
    }
    for section in table.chunks_exact(entry_size as usize) {
        const SHT_NOTE: u32 = 7;
        if u32_at(section, 4) != SHT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(section, 0x18), u64_at(section, 0x20));
        if size > 1 << 16 {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        file.read_exact_at(&mut notes, offset)?;
        if let Some(id) = find_build_id(&notes) {
            return Ok(Some(id.to_vec()));
        }
    }
    Ok(None)
}

/// Walks ELF notes for the GNU build id (`NT_GNU_BUILD_ID`, type 3, owner "GNU").
fn find_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let name_size = u32_at(notes, 0) as usize;
        let desc_size = u32_at(notes, 4) as usize;
        let kind = u32_at(notes, 8);
        let name = notes.get(12..12 + name_size)?;
        let desc_at = 12 + align(name_size);
        let desc = notes.get(desc_at..desc_at + desc_size)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(desc_at + align(desc_size)..)?;
    }
    None
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_image_has_a_stable_subject_safe_id() {
        let id = current().unwrap();
        assert!(id.len() <= 41 && id.len() > 8, "{id}");
        // Read from memory and from the file alike.
        assert_eq!(loaded_build_id().as_deref(), Some(id));
        assert!(id.starts_with('b') || id.starts_with('s'));
        assert!(id[1..].bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_eq!(of_file("/proc/self/exe").unwrap(), id);
    }

    #[test]
    fn a_copy_of_the_executable_has_the_same_id_and_another_file_does_not() {
        let dir = std::env::temp_dir().join(format!("taskpool-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("copy");
        std::fs::copy("/proc/self/exe", &copy).unwrap();
        assert_eq!(of_file(copy.to_str().unwrap()).unwrap(), current().unwrap());
        let other = dir.join("other");
        std::fs::write(&other, b"not an executable").unwrap();
        let other_id = of_file(other.to_str().unwrap()).unwrap();
        assert!(other_id.starts_with('s'));
        assert_ne!(other_id, current().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_executable_that_cannot_be_read_is_named_with_the_reason() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let message = unidentified("/proc/self/exe", &denied);
        assert!(message.contains("reading /proc/self/exe"), "{message}");
        assert!(message.contains("may run it but not read it"), "{message}");
        let missing = io::Error::from(io::ErrorKind::NotFound);
        let message = unidentified("/proc/self/exe", &missing);
        assert!(message.starts_with("cannot identify the running executable"), "{message}");
        assert!(!message.contains("not read it"), "{message}");
    }

    #[test]
    fn notes_are_walked_to_the_build_id() {
        let mut notes = Vec::new();
        // An unrelated note first (owner "Go", type 4, 3 bytes of payload padded to 4).
        notes.extend_from_slice(&3u32.to_le_bytes());
        notes.extend_from_slice(&3u32.to_le_bytes());
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(b"Go\0\0abc\0");
        notes.extend_from_slice(&4u32.to_le_bytes());
        notes.extend_from_slice(&2u32.to_le_bytes());
        notes.extend_from_slice(&3u32.to_le_bytes());
        notes.extend_from_slice(b"GNU\0\xab\xcd\0\0");
        assert_eq!(find_build_id(&notes), Some(&[0xab, 0xcd][..]));
        assert_eq!(find_build_id(&notes[..10]), None);
    }
}
