//! Writing a download into its `.incomplete` file, on disk before it is renamed into place.
//!
//! On Linux the file is written with direct I/O (`O_DIRECT`): the chunks are gathered into
//! aligned buffers that a thread of the file's own hands to the disk while the next one fills.
//! The data skips the page cache, so the CPU neither copies it there nor writes it back later,
//! and the final `fdatasync` has only the metadata left to do. Where direct I/O is refused (a
//! file system without it, another OS) the chunks go through the page cache with vectored
//! writes, and a flusher thread writes them back every few megabytes.
//!
//! Either way the file holds exactly the bytes received when the chunks stop, broken connection
//! or not, so a later attempt resumes from its length.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use bytes::Bytes;

/// The buffered writer writes once it holds this many bytes, or this many chunks.
const WRITE_BYTES: usize = 1 << 20;
const WRITE_SLICES: usize = 256;
/// Bytes written between two background flushes of a buffered download.
const SYNC_EVERY: usize = 8 << 20;

/// Where a download's chunks go, in order.
pub(super) enum Output {
    #[cfg(target_os = "linux")]
    Direct(direct::Output),
    Buffered(Buffered),
}

impl Output {
    /// Continue `target` after its first `have` bytes (those already there; 0 creates it).
    pub(super) fn open(target: &Path, have: u64) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            match direct::Output::open(target, have) {
                Ok(output) => return Ok(Self::Direct(output)),
                // No direct I/O on this file system (EINVAL): through the page cache instead.
                Err(e) if e.raw_os_error() == Some(direct::EINVAL) => {
                    tracing::debug!(path = %target.display(), "no direct I/O here; writing through the page cache");
                }
                Err(e) => return Err(e),
            }
        }
        Buffered::open(target, have).map(Self::Buffered)
    }

    /// Write `chunk` after what came before; `seen` reads its bytes on the way (from the
    /// copy in the aligned buffer under direct I/O, while it is in this core's cache).
    pub(super) fn push(&mut self, chunk: Bytes, seen: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Self::Direct(output) => output.push(&chunk, seen),
            Self::Buffered(output) => {
                seen(&chunk);
                output.push(chunk)
            }
        }
    }

    /// Write what is left and sync the file's data and size; returns once they are on disk.
    pub(super) fn finish(self) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Self::Direct(output) => output.finish(),
            Self::Buffered(output) => output.finish(),
        }
    }
}

/// Appends through the page cache, the chunks gathered (not copied) into vectored writes.
pub(super) struct Buffered {
    file: File,
    /// The disk gets the file while it downloads: every SYNC_EVERY bytes a flusher thread
    /// writes back what is there so far, so the final sync only waits for the tail.
    flusher: Flusher,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    unsynced: usize,
}

impl Buffered {
    fn open(target: &Path, have: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(target)?;
        debug_assert_eq!(file.metadata().map(|m| m.len()).ok(), Some(have));
        Ok(Self {
            flusher: Flusher::start(&file)?,
            file,
            pending: Vec::with_capacity(WRITE_SLICES),
            pending_bytes: 0,
            unsynced: 0,
        })
    }

    fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        self.pending_bytes += chunk.len();
        self.pending.push(chunk);
        if self.pending_bytes >= WRITE_BYTES || self.pending.len() >= WRITE_SLICES {
            write_all_chunks(&mut self.file, &self.pending)?;
            self.unsynced += self.pending_bytes;
            self.pending.clear();
            self.pending_bytes = 0;
            if self.unsynced >= SYNC_EVERY {
                self.flusher.kick();
                self.unsynced = 0;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        write_all_chunks(&mut self.file, &self.pending)?;
        self.flusher.finish()?;
        // The data and the size that reading it needs (fdatasync skips the timestamps).
        self.file.sync_data()
    }
}

/// Write every chunk, in order, with vectored writes (retrying the rest after a short write).
fn write_all_chunks(out: &mut impl Write, chunks: &[Bytes]) -> io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < chunks.len() {
        let slices: Vec<io::IoSlice<'_>> = std::iter::once(&chunks[index][offset..])
            .chain(chunks[index + 1..].iter().map(|c| &c[..]))
            .map(io::IoSlice::new)
            .collect();
        let mut written = match out.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while index < chunks.len() {
            let left = chunks[index].len() - offset;
            if written < left {
                offset += written;
                break;
            }
            written -= left;
            index += 1;
            offset = 0;
        }
    }
    Ok(())
}

/// Writes a file's data back to disk on a thread of its own, on request, while the writer goes
/// on writing (a kick while a flush runs is folded into the next one).
struct Flusher {
    kicks: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Flusher {
    fn start(file: &File) -> io::Result<Self> {
        let file = file.try_clone()?;
        let (kicks, kicked) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("imageai-flush".into())
            .spawn(move || {
                while kicked.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Self { kicks, thread })
    }

    fn kick(&self) {
        let _ = self.kicks.try_send(());
    }

    /// Wait for the flush in progress; its error, if any.
    fn finish(self) -> io::Result<()> {
        let Self { kicks, thread } = self;
        drop(kicks);
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the flush thread panicked")))
    }
}

#[cfg(target_os = "linux")]
mod direct {
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};
    use std::sync::mpsc;

    pub(super) use libc::EINVAL;
    use libc::O_DIRECT;

    /// File offsets, lengths and buffer addresses of direct writes are multiples of this (the
    /// largest logical block size in use; 512-byte devices accept it too).
    const BLOCK: usize = 4096;
    /// One write to the disk.
    const BUFFER: usize = 4 << 20;
    /// Buffers per file: one filling, one at the disk, one spare.
    const BUFFERS: usize = 3;

    /// A buffer whose data starts at a `BLOCK`-aligned address inside a `Vec` that never
    /// grows past its capacity (so it never moves), filled by appending: nothing is zeroed
    /// first, and no unsafe allocation.
    struct Aligned {
        raw: Vec<u8>,
        start: usize,
    }

    impl Aligned {
        fn new() -> Self {
            let mut raw: Vec<u8> = Vec::with_capacity(BUFFER + BLOCK);
            let start = raw.as_ptr().align_offset(BLOCK);
            raw.resize(start, 0);
            Self { raw, start }
        }

        fn len(&self) -> usize {
            self.raw.len() - self.start
        }

        fn filled(&self) -> &[u8] {
            &self.raw[self.start..]
        }

        /// Copy as much of `data` as fits; how much that was.
        fn fill(&mut self, data: &[u8]) -> usize {
            let n = data.len().min(BUFFER - self.len());
            self.raw.extend_from_slice(&data[..n]);
            n
        }

        fn is_full(&self) -> bool {
            self.len() == BUFFER
        }

        fn clear(&mut self) {
            self.raw.truncate(self.start);
        }
    }

    /// What the writer hands the disk thread: a full buffer and where it goes in the file.
    struct Block {
        offset: u64,
        buffer: Aligned,
    }

    /// Writes whole buffers with direct I/O on a disk thread while the next one fills; the
    /// tail that is not a whole block goes through the page cache at the end.
    pub(in crate::models) struct Output {
        target: PathBuf,
        current: Aligned,
        /// Where `current` goes in the file.
        offset: u64,
        full: mpsc::SyncSender<Block>,
        empty: mpsc::Receiver<Aligned>,
        /// Taken when it is joined early, after it stopped on an error.
        disk: Option<std::thread::JoinHandle<io::Result<File>>>,
    }

    impl Output {
        pub(in crate::models) fn open(target: &Path, have: u64) -> io::Result<Self> {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .custom_flags(O_DIRECT)
                .open(target)?;
            // Start at the block boundary below `have`: the bytes between are read back into
            // the first buffer and written again, unchanged.
            let kept = (have % BLOCK as u64) as usize;
            let offset = have - kept as u64;
            let mut current = Aligned::new();
            if kept > 0 {
                let mut head = vec![0u8; kept];
                // Direct reads need aligned buffers too: the head is read through a plain handle.
                File::open(target)?.read_exact_at(&mut head, offset)?;
                current.fill(&head);
            }
            let (full, full_rx) = mpsc::sync_channel::<Block>(BUFFERS);
            let (empty_tx, empty) = mpsc::sync_channel::<Aligned>(BUFFERS);
            for _ in 1..BUFFERS {
                let _ = empty_tx.send(Aligned::new());
            }
            let disk = {
                let target = target.to_path_buf();
                std::thread::Builder::new()
                    .name("imageai-disk".into())
                    .spawn(move || disk_thread(file, &target, &full_rx, &empty_tx))?
            };
            Ok(Self {
                target: target.to_path_buf(),
                current,
                offset,
                full,
                empty,
                disk: Some(disk),
            })
        }

        pub(in crate::models) fn push(
            &mut self,
            mut data: &[u8],
            seen: &mut dyn FnMut(&[u8]),
        ) -> io::Result<()> {
            while !data.is_empty() {
                let before = self.current.len();
                let n = self.current.fill(data);
                seen(&self.current.filled()[before..]);
                data = &data[n..];
                if self.current.is_full() {
                    // An empty buffer back from the disk thread; none means it stopped on an
                    // error.
                    let Ok(next) = self.empty.recv() else {
                        return Err(self.disk_error());
                    };
                    let buffer = std::mem::replace(&mut self.current, next);
                    let len = buffer.len() as u64;
                    let offset = self.offset;
                    if self.full.send(Block { offset, buffer }).is_err() {
                        return Err(self.disk_error());
                    }
                    self.offset += len;
                }
            }
            Ok(())
        }

        /// Why the disk thread stopped early.
        fn disk_error(&mut self) -> io::Error {
            match self.disk.take().map(std::thread::JoinHandle::join) {
                Some(Ok(Err(e))) => e,
                Some(Err(_)) => io::Error::other("the disk thread panicked"),
                _ => io::Error::other("the disk thread stopped"),
            }
        }

        pub(in crate::models) fn finish(self) -> io::Result<()> {
            let Self {
                target,
                current,
                offset,
                full,
                empty,
                disk,
            } = self;
            drop(full);
            drop(empty);
            let file = disk
                .ok_or_else(|| io::Error::other("the disk thread stopped"))?
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the disk thread panicked")))?;
            // The tail: its whole blocks directly, the rest through the page cache (so no
            // padding is ever on disk), then the data and the size made durable.
            let whole = current.len() - current.len() % BLOCK;
            if whole > 0 {
                file.write_all_at(&current.filled()[..whole], offset)?;
            }
            let plain = OpenOptions::new().write(true).open(&target)?;
            plain.write_all_at(&current.filled()[whole..], offset + whole as u64)?;
            plain.sync_data()
        }
    }

    /// Write each full buffer where it goes and hand it back; the file once the writer is done.
    fn disk_thread(
        file: File,
        target: &Path,
        full: &mpsc::Receiver<Block>,
        empty: &mpsc::SyncSender<Aligned>,
    ) -> io::Result<File> {
        let mut file = file;
        while let Ok(Block { offset, mut buffer }) = full.recv() {
            match file.write_all_at(buffer.filled(), offset) {
                Ok(()) => {}
                // The file system took the flag but not the write (alignment rules of its
                // own): this buffer and the rest through the page cache.
                Err(e) if e.raw_os_error() == Some(EINVAL) => {
                    file = OpenOptions::new().write(true).open(target)?;
                    file.write_all_at(buffer.filled(), offset)?;
                }
                Err(e) => return Err(e),
            }
            buffer.clear();
            if empty.send(buffer).is_err() {
                break;
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `max` bytes per call, as a pipe or a full disk may.
    struct Short {
        max: usize,
        got: Vec<u8>,
    }

    impl Write for Short {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Bytes that vary with their position and `seed` (a misplaced block shows).
    fn pattern(len: usize, seed: u64) -> Vec<u8> {
        (0..len as u64)
            .map(|i| ((i ^ seed << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
            .collect()
    }

    /// `have` bytes already in the file, then `sizes` pushed as chunks: the file holds exactly
    /// all of them, in order, and the pushed bytes are seen once each, in order (the hash reads
    /// them there), through `open` and the chosen kind of output.
    fn check_output(open: impl Fn(&Path, u64) -> io::Result<Output>, label: &str) {
        const MB: usize = 1 << 20;
        let cases: &[(usize, &[usize])] = &[
            (0, &[]),
            (0, &[1]),
            (0, &[4096]),
            (0, &[70_000, 3, 65_536, 1_000_000]),
            (0, &[5 * MB, 5 * MB, 2 * MB + 17]),
            (1, &[4095, 8192]),
            (4095, &[1, 1]),
            (4096, &[10]),
            (50_000, &[4 * MB, 123]),
            (4 * MB - 1, &[2, 4 * MB]),
            (9 * MB + 4097, &[]),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (case, &(have, sizes)) in cases.iter().enumerate() {
            let target = dir.path().join(format!("{case}.incomplete"));
            let mut expected = pattern(have, case as u64);
            if have > 0 {
                std::fs::write(&target, &expected).unwrap();
            }
            let mut output = open(&target, have as u64).unwrap();
            let mut seen = Vec::new();
            for (i, &size) in sizes.iter().enumerate() {
                let chunk = pattern(size, (case * 100 + i + 1) as u64);
                expected.extend_from_slice(&chunk);
                output
                    .push(Bytes::from(chunk), &mut |bytes| {
                        seen.extend_from_slice(bytes)
                    })
                    .unwrap();
            }
            output.finish().unwrap();
            let written = std::fs::read(&target).unwrap();
            assert_eq!(written.len(), expected.len(), "{label}: case {case}");
            assert!(written == expected, "{label}: case {case} differs");
            assert!(
                seen == expected[have..],
                "{label}: case {case}: what was seen is not what was pushed"
            );
        }
    }

    #[test]
    fn buffered_output_holds_exactly_what_was_pushed_after_what_was_there() {
        check_output(
            |t, have| Buffered::open(t, have).map(Output::Buffered),
            "buffered",
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn direct_output_holds_exactly_what_was_pushed_after_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = direct::Output::open(&dir.path().join("probe"), 0) {
            assert_eq!(e.raw_os_error(), Some(direct::EINVAL), "{e}");
            eprintln!("SKIPPED: the temp folder's file system has no direct I/O");
            return;
        }
        check_output(
            |t, have| direct::Output::open(t, have).map(Output::Direct),
            "direct",
        );
    }

    /// A file system that takes no more data: the writer's error is the disk's (it becomes
    /// "the disk is full" for the user), whichever kind of output `open` picked.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_is_the_writers_error() {
        let mut output = Output::open(Path::new("/dev/full"), 0).unwrap();
        let mut result = Ok(());
        for _ in 0..4 {
            result = output.push(Bytes::from(vec![7u8; 3 << 20]), &mut |_| {});
            if result.is_err() {
                break;
            }
        }
        let error = result.and_then(|()| output.finish()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
    }

    /// The same under direct I/O, for real: the test runs itself again in a private mount
    /// namespace with a 1 MB tmpfs as its folder. Needs `unshare -rm` (unprivileged user
    /// namespaces) and a kernel whose tmpfs takes direct I/O (6.6 on); elsewhere it says so
    /// and checks nothing.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_disk_under_direct_io_is_the_writers_error() {
        const INSIDE: &str = "IMAGEAI_TEST_SMALL_TMPFS";
        if let Some(dir) = std::env::var_os(INSIDE) {
            let target = Path::new(&dir).join("blob.incomplete");
            let mut output = match direct::Output::open(&target, 0) {
                Ok(output) => output,
                Err(e) if e.raw_os_error() == Some(direct::EINVAL) => {
                    println!("SKIPPED: this kernel's tmpfs has no direct I/O");
                    return;
                }
                Err(e) => panic!("{e}"),
            };
            // Whole buffers, so the disk thread meets the full disk and the writer learns it
            // from there.
            let data = vec![7u8; 4 << 20];
            let mut result = Ok(());
            for _ in 0..5 {
                result = output.push(&data, &mut |_| {});
                if result.is_err() {
                    break;
                }
            }
            let error = result.and_then(|()| output.finish()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
            println!("CHECKED");
            return;
        }
        let probe = std::process::Command::new("unshare")
            .args(["-rm", "true"])
            .output();
        if !probe.is_ok_and(|o| o.status.success()) {
            eprintln!(
                "SKIPPED: `unshare -rm` is not permitted here, so no small tmpfs can be mounted"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "mount -t tmpfs -o size=1m tmpfs '{dir}' && exec '{exe}' --exact --nocapture \
             models::write::tests::a_full_disk_under_direct_io_is_the_writers_error",
            dir = dir.path().display(),
            exe = std::env::current_exe().unwrap().display(),
        );
        let output = std::process::Command::new("unshare")
            .args(["-rm", "sh", "-c", &script])
            .env(INSIDE, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains("CHECKED") || stdout.contains("SKIPPED"),
            "{stdout}"
        );
        if stdout.contains("SKIPPED") {
            eprintln!("SKIPPED: this kernel's tmpfs has no direct I/O");
        }
    }

    #[test]
    fn chunks_are_written_whole_and_in_order_despite_short_writes() {
        let chunks: Vec<Bytes> = (0u8..5)
            .map(|i| Bytes::from(vec![i; 7 + usize::from(i) * 3]))
            .collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        for max in [1, 4, 7, 10, 1000] {
            let mut out = Short {
                max,
                got: Vec::new(),
            };
            write_all_chunks(&mut out, &chunks).unwrap();
            assert_eq!(out.got, expected, "max {max}");
        }
    }
}
