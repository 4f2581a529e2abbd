//! The kernel log (`/dev/kmsg`), read from where it stood when opened: the
//! names of the processes the OOM killer took.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A reader of the records the kernel logs from now on.
#[derive(Debug)]
pub struct KernelLog {
    file: File,
}

/// A record is at most this long (the kernel's own bound is about 1 KiB
/// of text plus its dictionary).
const RECORD_BUFFER: usize = 8192;

impl KernelLog {
    /// Opens `/dev/kmsg` (root only) at its end.
    pub fn open() -> io::Result<Self> {
        Self::open_at(Path::new("/dev/kmsg"))
    }

    pub fn open_at(path: &Path) -> io::Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path)?;
        // /dev/kmsg seeks to after its last record; a plain file (tests)
        // to its end.
        file.seek(SeekFrom::End(0))?;
        Ok(Self { file })
    }

    /// The records logged since the last call, each as one text. Records
    /// the kernel overwrote before they were read are skipped.
    pub fn read_new(&mut self) -> Vec<String> {
        let mut records = Vec::new();
        let mut buffer = vec![0u8; RECORD_BUFFER];
        loop {
            match self.file.read(&mut buffer) {
                // A plain file at its end.
                Ok(0) => break,
                Ok(n) => records.push(String::from_utf8_lossy(&buffer[..n]).into_owned()),
                // EPIPE: records were lost; the next read goes on after them.
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EAGAIN: nothing more now. Anything else: nothing to read.
                Err(_) => break,
            }
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_what_comes_after_opening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        std::fs::write(&path, "6,1,1,-;before\n").unwrap();
        let mut log = KernelLog::open_at(&path).unwrap();
        assert!(log.read_new().is_empty());
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"6,2,2,-;after\n").unwrap();
        let records = log.read_new();
        assert_eq!(records.concat(), "6,2,2,-;after\n");
        assert!(log.read_new().is_empty());
    }

    #[test]
    fn the_real_kernel_log_opens_for_root_only() {
        match KernelLog::open() {
            // Root (the CI): nothing older than now comes back in bulk.
            Ok(mut log) => assert!(log.read_new().len() < 100),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound
                ),
                "{e}"
            ),
        }
    }
}
