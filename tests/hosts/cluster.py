"""A private GlusterFS cluster in network namespaces: several "hosts" sharing one volume.

Used by the multi-host tests (``tests/hosts/``) and meant for benchmark scripts as well::

    with Cluster.start(3) as cluster:
        spool = cluster.mount(1) / "spool"
        worker = cluster.run_in_host(2, ["jobq", "worker", "app", "--spool", str(spool)])
        cluster.cut(2)      # host 2 loses the network; its mount answers ENOTCONN soon
        cluster.restore(2)

What it builds (everything below ``BASE``, default ``/tmp/jobq-hosts``, and in private network
namespaces; the root namespace gets no interface, address or route):

- ``jqsrv``: a namespace with a bridge ``jqbr`` (10.77.0.1/24), ``glusterd`` (our own process,
  with its state under ``BASE/glusterd`` instead of ``/var/lib/glusterd``) and one brick on
  ``BASE/brick`` (any local filesystem with ``trusted.*`` xattrs: ext4, xfs, tmpfs).
- ``jqh1`` .. ``jqhN``: one namespace per host, linked to the bridge by a veth pair (``vhI`` on
  the bridge, ``eth0`` in the host, 10.77.0.(10+I)/24).
- Host I mounts the volume on ``BASE/mnt/hI`` with its own FUSE client (``glusterfs``) started
  by ``nsenter --net``: the mount lives in the caller's mount namespace (visible to the test
  process and to every host's processes), its traffic goes through host I's link.

``cut(i)`` sets host I's bridge port down: its packets go nowhere, and after the volume's
``network.ping-timeout`` the client gives up on the brick and the mount answers ``ENOTCONN``
(measured: 3-6 s for a ping timeout of 3 s). ``restore(i)`` sets the port up; the client
reconnects on its own within 1.5-4 s (it retries every 3 s).

The names (namespaces, ``BASE``) are fixed so that a later run finds what a crashed one left:
one cluster per machine at a time. ``start`` takes a lock (``/run/jobq-hosts.lock``, released
by ``close`` or when the process dies) and waits up to two minutes for another cluster.

``close()`` (also on a failed start, and at the next ``start`` after a crashed run) kills
every process it started by PID, and any process left in its namespaces, unmounts (lazily if
need be), stops the brick and ``glusterd``, deletes the namespaces (and so the veths and the
bridge) and removes ``BASE``, plus the two files GlusterFS insists on writing elsewhere: the
brick's log under ``/var/log/glusterfs/bricks/`` and its socket under ``/run/gluster/``.
What stays: lines in ``/var/log/glusterfs/cmd_history.log`` (an append-only log of CLI
commands), and two empty folders any glusterd start creates whatever its working directory,
``/var/lib/glusterd/ss_brick`` and ``/var/lib/glusterd/geo-replication``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

BASE = Path("/tmp/jobq-hosts")
VOLUME = "jqvol"
SERVER_NS = "jqsrv"
BRIDGE = "jqbr"
SUBNET = "10.77.0"
SERVER_IP = f"{SUBNET}.1"
MAX_HOSTS = 9

# Volume options (GlusterFS 10.3), set on top of the defaults; each was measured here:
# - network.ping-timeout 3 (default 42): how long a client waits for a silent brick before it
#   fails calls with ENOTCONN. A cut link then shows up within 4-6 s (well inside a 30 s
#   lease) as an error a worker backs off from, instead of calls hanging for 42 s. Keep it a
#   few seconds above the brick's worst pause under load, or a busy brick looks like a cut.
# - performance.stat-prefetch off (md-cache; default on): with md-cache, a client that listed
#   a directory keeps the name -> file mapping it saw. When another host then renames a new
#   file over that name (a commit renames the outcome record over done/Q/ID.json), open() of
#   the name on this client fails with ENOENT although the name exists, once or a few times
#   (each failure drops stale state; a later open works). Measured: 5-140 of 1500 names, and
#   a done record unreadable for over a second in a campaign (the kernel's --entry-timeout=0
#   does not help; md-cache off, md-cache-timeout 0 or mounting with --use-readdirp=no does).
#   jobq's readers (result(), jobq status ID, dependency checks) would take such a record for
#   missing. test_replaced_name_reads_back checks it.
# - performance.nl-cache off (already the default): a negative-lookup cache could hide, for
#   up to nl-cache-timeout, files that other hosts create; jobq looks for exactly those.
# Left at their defaults, and fine for jobq: write-behind and flush-behind (jobq fsyncs a file
# before renaming it into place unless --no-durable, which flushes them; --no-durable was not
# measured here), open-behind, quick-read (keyed by file, and jobq never rewrites a file in
# place), io-cache, read-ahead and readdir-ahead (off). The kernel's 1 s attribute cache makes
# a heartbeat look up to about a second older to other hosts: keep --lease well above that
# (the tests use --lease 5).
VOLUME_OPTIONS: dict[str, str] = {
    "network.ping-timeout": "3",
    "performance.stat-prefetch": "off",
    "performance.nl-cache": "off",
}

TOOLS = ("ip", "nsenter", "mount", "umount", "glusterd", "glusterfs", "gluster")


def missing_requirements() -> str | None:
    """Why this machine cannot build a cluster (None if it can): root, tools, /dev/fuse."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, glusterd, FUSE mounts): `make test-hosts` as root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}: `make gluster` installs glusterfs-server/-client"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    return None


def _run(argv: Sequence[str], timeout: float = 60, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _mounts_under(base: Path) -> list[str]:
    """Mount points at or below ``base`` (deepest first), from mountinfo: never stats them."""
    prefix = str(base).rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == str(base) or point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill(proc: subprocess.Popen[Any], grace: float = 5) -> None:
    """SIGTERM ``proc``, SIGKILL it after ``grace`` seconds; always reaps it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class Cluster:
    """A GlusterFS server and ``n_hosts`` client hosts, each in its own network namespace."""

    def __init__(
        self,
        base: Path = BASE,
        options: Mapping[str, str] | None = None,
        client_args: Sequence[str] = (),
    ) -> None:
        self.base = base
        self.n_hosts = 0
        self.options = {**VOLUME_OPTIONS, **(options or {})}
        self.client_args = list(client_args)
        self._glusterd: subprocess.Popen[bytes] | None = None
        self._clients: dict[int, subprocess.Popen[bytes]] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._state: dict[str, str] = {}
        self._lock_fd: int | None = None

    # -- building --------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        n_hosts: int,
        base: Path = BASE,
        *,
        options: Mapping[str, str] | None = None,
        client_args: Sequence[str] = (),
    ) -> Cluster:
        """Build the network, start glusterd and the volume, mount it on every host.

        ``options`` are volume options set on top of ``VOLUME_OPTIONS``; ``client_args`` are
        extra arguments for every host's ``glusterfs`` client (``--entry-timeout=0``, ...).

        Leftovers of an earlier run that died (namespaces, mounts, processes, ``base``) are
        removed first. On any failure everything built so far is torn down again.

        Raises:
            RuntimeError: if a step fails (the message names the command and its error).
        """
        if not 1 <= n_hosts <= MAX_HOSTS:
            raise ValueError(f"n_hosts must be 1..{MAX_HOSTS}")
        cluster = cls(base, options, client_args)
        cluster._lock()
        try:
            cluster._teardown()
            cluster.n_hosts = n_hosts
            cluster._build(n_hosts)
        except BaseException:
            cluster.close()
            raise
        return cluster

    def _lock(self, timeout: float = 120) -> None:
        path = Path("/run") / f"{self.base.name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise RuntimeError(f"another cluster holds {path}") from None
                time.sleep(0.5)
            else:
                self._lock_fd = fd
                return

    def _build(self, n_hosts: int) -> None:
        for sub in ("brick", "glusterd/work", "glusterd/run", "log", "mnt", "tmp"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self._network(n_hosts)
        self._start_glusterd()
        self._create_volume()
        for i in self.hosts:
            self._mount(i)

    def _network(self, n_hosts: int) -> None:
        ip = ["ip", "-n", SERVER_NS]
        _run(["ip", "netns", "add", SERVER_NS])
        _run([*ip, "link", "set", "lo", "up"])
        _run([*ip, "link", "add", BRIDGE, "type", "bridge", "forward_delay", "0"])
        _run([*ip, "addr", "add", f"{SERVER_IP}/24", "dev", BRIDGE])
        _run([*ip, "link", "set", BRIDGE, "up"])
        for i in range(1, n_hosts + 1):
            ns = self.namespace(i)
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(
                [*ip, "link", "add", f"vh{i}", "type", "veth", "peer", "name", "eth0", "netns", ns]
            )
            _run([*ip, "link", "set", f"vh{i}", "master", BRIDGE, "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def _start_glusterd(self) -> None:
        gd = self.base / "glusterd"
        volfile = gd / "glusterd.vol"
        volfile.write_text(
            "volume management\n"
            "    type mgmt/glusterd\n"
            f"    option working-directory {gd / 'work'}\n"
            f"    option run-directory {gd / 'run'}\n"
            f"    option glusterd-sockfile {self._sock}\n"
            "    option transport-type socket\n"
            f"    option transport.socket.bind-address {SERVER_IP}\n"
            "    option ping-timeout 0\n"
            "    option event-threads 1\n"
            "end-volume\n"
        )
        with (self.base / "log" / "glusterd.out").open("wb") as out:
            self._glusterd = subprocess.Popen(
                [*self._nsenter(SERVER_NS), "glusterd", "-N", "-f", str(volfile),
                 "-l", str(self.base / "log" / "glusterd.log")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self._glusterd_answers():
            if self._glusterd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"glusterd did not start: see {self.base / 'log'}")
            time.sleep(0.2)

    def _glusterd_answers(self) -> bool:
        try:
            done = subprocess.run(
                self._gluster_argv("volume", "list"), capture_output=True, timeout=10
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def _create_volume(self) -> None:
        # "force": the brick may sit on the root filesystem, which gluster otherwise refuses.
        brick = f"{SERVER_IP}:{self.base / 'brick'}"
        _run(self._gluster_argv("volume", "create", VOLUME, brick, "force"))
        for key, value in self.options.items():
            _run(self._gluster_argv("volume", "set", VOLUME, key, value))
        _run(self._gluster_argv("volume", "start", VOLUME))
        pidfile = next((self.base / "glusterd" / "run").glob(f"vols/{VOLUME}/*.pid"))
        pid = int(pidfile.read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        self._state = {"brick_pid": str(pid), "brick_pidfile": str(pidfile)}
        for flag, key in (("-S", "brick_socket"), ("-l", "brick_log")):
            if flag in argv:
                self._state[key] = argv[argv.index(flag) + 1]
        (self.base / "state.json").write_text(json.dumps(self._state))

    def _mount(self, i: int) -> None:
        point = self.mount(i)
        point.mkdir(parents=True, exist_ok=True)
        with (self.base / "log" / f"client-h{i}.out").open("wb") as out:
            self._clients[i] = subprocess.Popen(
                [*self._nsenter(self.namespace(i)), "glusterfs", "-N",
                 f"--volfile-server={SERVER_IP}", f"--volfile-id={VOLUME}",
                 "-l", str(self.base / "log" / f"client-h{i}.log"), *self.client_args,
                 str(point)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while str(point) not in _mounts_under(point) or self.probe(i) is not None:
            if self._clients[i].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host {i} could not mount the volume: see {self.base}/log")
            time.sleep(0.1)

    # -- using -----------------------------------------------------------------------------

    volume = VOLUME

    def gluster(self, *args: str, timeout: float = 60) -> str:
        """Run the ``gluster`` CLI against this cluster's glusterd; its output.

        Raises:
            RuntimeError: if it exits non-zero (the message has its error).
        """
        return _run(self._gluster_argv(*args), timeout=timeout)

    @property
    def hosts(self) -> range:
        """The host numbers, 1..n_hosts."""
        return range(1, self.n_hosts + 1)

    @staticmethod
    def namespace(i: int) -> str:
        """Host ``i``'s network namespace name."""
        return f"jqh{i}"

    @staticmethod
    def address(i: int) -> str:
        """Host ``i``'s address on the private network."""
        return f"{SUBNET}.{10 + i}"

    def mount(self, i: int) -> Path:
        """Where host ``i`` mounts the volume."""
        return self.base / "mnt" / f"h{i}"

    def run_in_host(
        self,
        i: int,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in host ``i``'s network namespace; ``close()`` kills it by PID.

        ``nsenter`` execs the command in its own process, so the Popen's pid is the command's.
        ``PATH`` starts with this Python's bin directory (the project's ``jobq``); ``env`` is
        added to this process's environment.
        """
        full_env = dict(os.environ)
        bindir = os.path.dirname(sys.executable)
        full_env["PATH"] = os.pathsep.join([bindir, full_env.get("PATH", os.defpath)])
        full_env.update(env or {})
        proc = subprocess.Popen(
            [*self._nsenter(self.namespace(i)), *argv],
            env=full_env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
        )  # fmt: skip
        self._procs.append(proc)
        return proc

    def call(
        self,
        i: int,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in host ``i`` to completion; its exit code, stdout and stderr."""
        proc = self.run_in_host(
            i, argv, env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            _kill(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())

    def cut(self, i: int) -> None:
        """Cut host ``i`` off the network (its bridge port goes down; nothing is delivered)."""
        _run(["ip", "-n", SERVER_NS, "link", "set", f"vh{i}", "down"])

    def restore(self, i: int) -> None:
        """Give host ``i`` its link back; its client reconnects by itself."""
        _run(["ip", "-n", SERVER_NS, "link", "set", f"vh{i}", "up"])

    def probe(self, i: int) -> str | None:
        """One round trip through host ``i``'s mount: None if it works, else the errno name.

        It creates, writes, lists and removes a file in ``.probe/`` at the volume's root (never
        in a spool); while a link is cut, the call blocks until the client gives up.
        """
        folder = self.mount(i) / ".probe"
        path = folder / f"h{i}.{os.getpid()}"
        try:
            folder.mkdir(exist_ok=True)
            path.write_bytes(b"probe")
            os.listdir(folder)
            path.unlink()
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return None

    def wait_mount(self, i: int, timeout: float = 60) -> float:
        """Wait until host ``i``'s mount works again; the seconds it took.

        Raises:
            TimeoutError: if it still fails after ``timeout`` seconds.
        """
        start = time.monotonic()
        while (error := self.probe(i)) is not None:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"host {i}'s mount still fails ({error}) after {timeout} s")
            time.sleep(0.1)
        return time.monotonic() - start

    # -- tearing down ----------------------------------------------------------------------

    def close(self) -> None:
        """Tear everything down (idempotent), then release the lock.

        Raises:
            RuntimeError: naming what could not be cleaned, after trying every step.
        """
        try:
            self._teardown()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def _teardown(self) -> None:
        """Remove everything this cluster, or a crashed earlier one, left."""
        errors: list[str] = []

        def step(what: str, func: Callable[..., object], *args: Any) -> None:
            try:
                func(*args)
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        hosts = self._existing_hosts()
        for i in hosts:
            step(f"restore h{i}", self.restore, i)
        for proc in self._procs:
            step(f"kill {proc.pid}", _kill, proc, 2)
        step("unmount", self._unmount_all)
        for client in self._clients.values():
            step(f"kill client {client.pid}", _kill, client)
        step("stop brick", self._stop_brick)
        if self._glusterd is not None:
            step("kill glusterd", _kill, self._glusterd)
        namespaces = [self.namespace(i) for i in hosts]
        if self._namespace_exists(SERVER_NS):
            namespaces.append(SERVER_NS)
        for ns in namespaces:
            step(f"kill processes in {ns}", self._kill_namespace, ns)
        step("unmount", self._unmount_all)  # a client killed above leaves a dead mount
        for ns in namespaces:
            step(f"delete {ns}", _run, ["ip", "netns", "delete", ns])
        step("remove files", self._remove_files)
        self._procs.clear()
        self._clients.clear()
        self._glusterd = None
        if errors:
            raise RuntimeError("cluster cleanup incomplete: " + "; ".join(errors))

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _existing_hosts(self) -> list[int]:
        return [i for i in range(1, MAX_HOSTS + 1) if self._namespace_exists(self.namespace(i))]

    @staticmethod
    def _namespace_exists(ns: str) -> bool:
        return os.path.exists(f"/run/netns/{ns}")

    def _unmount_all(self) -> None:
        for point in _mounts_under(self.base):
            if subprocess.run(["umount", point], capture_output=True, timeout=30).returncode:
                _run(["umount", "-l", point], timeout=30)

    def _stop_brick(self) -> None:
        state = self._state or self._saved_state()
        if self._glusterd is not None and self._glusterd.poll() is None:
            subprocess.run(
                self._gluster_argv("volume", "stop", VOLUME, "force"),
                capture_output=True,
                timeout=60,
            )
        pid = int(state.get("brick_pid", "0"))
        if pid and _pid_alive(pid) and state.get("brick_pidfile", "") in _cmdline(pid):
            os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _kill_namespace(ns: str) -> None:
        """SIGKILL every process left in ``ns``: only this harness starts processes there."""
        for _ in range(50):
            pids = [int(p) for p in _run(["ip", "netns", "pids", ns]).split()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        raise RuntimeError(f"processes in {ns} survive SIGKILL")

    def _remove_files(self) -> None:
        state = self._state or self._saved_state()
        for key in ("brick_socket", "brick_log"):
            if state.get(key):
                Path(state[key]).unlink(missing_ok=True)
        if _mounts_under(self.base):
            raise RuntimeError(f"still mounted under {self.base}: not removing it")
        shutil.rmtree(self.base, ignore_errors=True)
        self._state = {}

    def _saved_state(self) -> dict[str, str]:
        try:
            saved = json.loads((self.base / "state.json").read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in saved.items()}

    @property
    def _sock(self) -> Path:
        return self.base / "glusterd" / "run" / "glusterd.socket"

    def _gluster_argv(self, *args: str) -> list[str]:
        return ["gluster", "--mode=script", f"--glusterd-sock={self._sock}",
                f"--log-file={self.base / 'log' / 'cli.log'}", *args]  # fmt: skip

    @staticmethod
    def _nsenter(ns: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{ns}", "--"]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
