"""Low-level file operations of the spool: the only code that renames or fsyncs.

Publishing follows Maildir: write a private temp file (O_EXCL), fsync it, rename it into a
scanned directory, fsync that directory. A rename doubles as a compare-and-swap: of several
renames of one source exactly one succeeds and the rest get ENOENT, which is not an error but a
lost race, reported as ``False``. OSErrors leave the spool package as ``SpoolError``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform
import sys
from typing import TYPE_CHECKING, Any

from jobq import layout as L
from jobq.errors import SpoolError
from jobq.names import UNIQUE
from jobq.waiting import local_filesystem

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ("DIR_MODE", "FILE_MODE", "FileOps", "list_names", "translated")

DIR_MODE = 0o700
FILE_MODE = 0o600


def list_names(directory: str, *, hidden: bool = False) -> list[str]:
    """File names in ``directory`` (no stat), skipping hidden ones unless ``hidden``; [] if it
    does not exist."""
    try:
        return [n for n in os.listdir(directory) if hidden or not n.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


#: Batches of at least this many new files share one syncfs (measured: from 2 files on it wins).
_SYNCFS_MIN = 2


@functools.lru_cache(maxsize=16)
def _syncfs_usable(root: str) -> bool:
    """Whether one ``syncfs(2)`` may stand in for the fsyncs of a batch of files under ``root``.

    Only on Linux >= 5.8, where syncfs reports writeback errors (before, it returned 0 even
    when data was lost), and only on local filesystems, whose ``sync_fs`` flushes the device:
    a network or FUSE filesystem's syncfs need not reach the server, while fsync does. The
    price: it also flushes other dirty data of that filesystem, which a busy neighbour makes
    slower (but never less safe).
    """
    if not sys.platform.startswith("linux") or _libc_syncfs() is None:
        return False
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8) and local_filesystem(root)


@functools.lru_cache(maxsize=16)
def _replies_may_be_lost(root: str) -> bool:
    """Whether a rename under ``root`` may report failure although it succeeded (not local)."""
    return not local_filesystem(root)


@functools.lru_cache(maxsize=1)
def _libc_syncfs() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def _syncfs(fd: int) -> None:
    """Flush the filesystem that ``fd`` lives on; raises OSError as fsync would."""
    if _libc_syncfs()(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def write_all(fd: int, data: bytes) -> None:
    """Write ``data`` whole to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_directory(path: str) -> None:
    """Make the entries of the directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    try:
        yield
    except SpoolError:
        raise
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        raise SpoolError(exc.errno or 0, f"cannot {action}: {reason}{where}") from exc


class FileOps:
    """Blocking file primitives rooted at one spool directory.

    Args:
        root: the spool directory.
        durable: fsync files and directories so that what is written survives power loss.
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.durable = durable
        self._tmp_prefix = os.path.join(self.root, L.TMP, "")
        self._synced_sizes: dict[str, int] = {}  # directory: its size when last fsynced

    def path(self, *parts: str) -> str:
        """A path inside the spool (``parts`` are relative names, never absolute)."""
        # A plain join: os.path.join's checks cost 1-2 µs a call on every claim and commit.
        return "/".join((self.root, *parts))

    # -- primitives ------------------------------------------------------------------------

    def fsync_dir(self, directory: str, *, always: bool = False) -> None:
        """Make the entries of ``directory`` durable (a no-op when not durable).

        Args:
            always: fsync even when not durable (files a power cut must not empty).
        """
        if self.durable or always:
            fsync_directory(directory)

    def _write_new(self, path: str, data: bytes) -> None:
        """Create ``path`` exclusively, write ``data`` whole, fsync if durable, check close."""
        self._write_new_file(path, data, sync=self.durable)

    def write_new_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """Create each ``(path, data)`` exclusively and make them all durable together.

        A durable batch on a local filesystem shares one ``syncfs(2)`` instead of one fsync
        per file (ext4 here: 8 files 1.3 ms with fsyncs, 0.3 ms with one syncfs); see
        ``_syncfs_usable`` for where that is safe. Elsewhere each file is fsynced. If anything
        fails, the files written so far are removed before the error propagates.

        Returns:
            Each file's inode number (lost-reply checks of later renames compare it).
        """
        shared = self.durable and len(items) >= _SYNCFS_MIN and _syncfs_usable(self.root)
        # Opened before writing: syncfs reports the writeback errors seen since this open.
        anchor = os.open(os.path.dirname(items[0][0]), os.O_RDONLY) if shared else -1
        written: list[str] = []
        inodes: list[int] = []
        try:
            for path, data in items:
                inodes.append(self._write_new_file(path, data, sync=self.durable and not shared))
                written.append(path)
            if shared:
                _syncfs(anchor)
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        finally:
            if anchor >= 0:
                os.close(anchor)
        return inodes

    def _write_new_file(self, path: str, data: bytes, *, sync: bool) -> int:
        """``_write_new`` with the fsync optional; returns the new file's inode number."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            # Before writing: a network filesystem's client still has the attributes the
            # create returned; after a write it asks the server again.
            ino = os.fstat(fd).st_ino
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        os.close(fd)
        return ino

    def read_file(self, path: str) -> bytes:
        """A whole (small, immutable) file in four system calls, not the seven of ``open()``."""
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size + 1)  # one byte more: a short read means the end
            if len(data) <= size:
                return data
            chunks = [data]
            while chunk := os.read(fd, 65536):  # it grew meanwhile: read to the end
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _temp_path(self, stem: str, suffix: str) -> str:
        # Unique per writer, not secret: the pid tells processes of a host apart, 32 random
        # bits hosts and calls (O_EXCL turns the rare clash into an error, never a mix-up).
        return f"{self._tmp_prefix}{stem}.{os.getpid()}.{UNIQUE.getrandbits(32):08x}{suffix}"

    def _publish_file(
        self, dest: str, data: bytes, *, always_sync: bool = False, take_back: bool = False
    ) -> None:
        """Publish ``data`` as ``dest`` through ``tmp/`` (durably if durable, or ``always_sync``).

        ``always_sync`` is for the few files written once per spool or worker start whose
        loss to a power cut costs more than their fsyncs: the format marker, registrations.
        ``take_back`` removes ``dest`` again if its directory cannot be synced: the caller
        reports the publish as failed, so it must not stay (a new job, not a replacement).
        """
        sync = self.durable or always_sync
        self._place_new(dest, data, sync=sync)
        if not sync:
            return
        try:
            self.fsync_dir(os.path.dirname(dest), always=always_sync)
        except BaseException:
            if take_back:
                with contextlib.suppress(OSError):
                    os.unlink(dest)
            raise

    def _place_new(self, dest: str, data: bytes, *, sync: bool) -> None:
        """Write ``data`` to a new temp file (fsynced if ``sync``) and rename it to ``dest``;
        the temp file is removed if that fails."""
        tmp = self._temp_path(os.path.basename(dest), ".tmp")
        self._write_new_file(tmp, data, sync=sync)
        try:
            os.rename(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _publish_then_sync(self, dest: str, data: bytes) -> None:
        """Publish ``data`` as the new file ``dest``: renamed into place first, then fsynced.

        Only where that fsync also writes the new name's directory block (ext4 without a
        journal: ``journal.entry_synced_with_file``): one flush instead of a file's and a
        directory's. That fsync does not write the directory's own inode, so when the
        directory has grown (a new block) since this process last synced it, or keeps its
        entries in its inode (inline data), the directory is fsynced too. A power cut before
        this returns may leave ``dest`` empty, as a non-durable publish may; if a sync or the
        close fails, ``dest`` is removed again (reported as failed; a worker may have taken
        it meanwhile, as with a failed directory sync).
        """
        directory = os.path.dirname(dest)
        tmp = self._temp_path(os.path.basename(dest), ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            write_all(fd, data)
            os.rename(tmp, dest)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        try:
            try:
                st = os.stat(directory)
                os.fsync(fd)
            finally:
                os.close(fd)
            if st.st_blocks == 0 or self._synced_sizes.get(directory) != st.st_size:
                self.fsync_dir(directory)
                self._synced_sizes[directory] = st.st_size  # ext4 directories never shrink
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(dest)
            raise

    def rename(
        self, src: str, dst: str, *, src_ino: int | None = None, shared: bool = False
    ) -> bool:
        """Rename ``src`` to ``dst``; False if ``src`` was gone (a lost race).

        On a network filesystem a rename can report ENOENT although it succeeded (its reply
        was lost and the retry found no source). Like Postfix's ``sane_rename`` we then look at
        the destination: when ``src_ino`` is given, the destination must be that very file;
        otherwise (destinations private to the caller) its existence is enough. A ``shared``
        source (a job file other actors move too) is judged by ENOENT alone on a local
        filesystem, where replies are never lost: two movers of one file to one name (a
        worker and a reaper fencing the same job) must not both find it there and win.
        """
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            if shared and not _replies_may_be_lost(self.root):
                return False
            try:
                found = os.stat(dst).st_ino
            except FileNotFoundError:
                return False
            return os.path.exists(src) is False and (src_ino is None or found == src_ino)
        return True

    def place(self, tmp: str, dest: str) -> None:
        """Rename a temp file of ours into place; its loss is an error, a lost reply is not.

        Raises:
            FileNotFoundError: if ``tmp`` was gone (someone removed our temp file).
        """
        if not self.rename(tmp, dest):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), tmp)

    def move(self, src: str, dst: str) -> bool:
        """``rename`` for a destination other actors may produce too (a reaper, a collector).

        The lost-reply check must then match the very file, so the source's inode is read
        first; a source already gone is a lost race. A local filesystem loses no reply: the
        rename's own ENOENT says that, and the stat (a syscall per commit) is skipped.
        """
        if not _replies_may_be_lost(self.root):
            return self.rename(src, dst, shared=True)
        try:
            ino = os.stat(src).st_ino
        except FileNotFoundError:
            return False
        return self.rename(src, dst, src_ino=ino, shared=True)

    # -- removal ---------------------------------------------------------------------------

    def remove(self, path: str) -> bool:
        """Delete a record or stale temp file; False if it was already gone."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.EPERM):
                return False
            raise SpoolError(exc.errno or 0, f"cannot remove {path}: {exc.strerror}") from exc
        return True
