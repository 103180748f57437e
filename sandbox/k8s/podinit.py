"""Container init of the sandbox runtime: set up the container's view of the machine, then exec its program.

`runtime.run_container` starts, for each container::

    ip netns exec <pod netns> unshare --mount --uts --propagation private -- python -I -S podinit.py <spec.json>

so this runs as root in the pod's network namespace, in a fresh private mount namespace and UTS namespace of its
own. It is run by path with `-I -S` (stdlib only, no site-packages, nothing from the environment) so starting it
does not import the `sandbox` package; `python -m sandbox.k8s.podinit <spec.json>` works the same. In order:

1. read the spec (written by run_container: the ContainerSpec fields plus `hostname`, `etc_files` - the
   generated /etc/hosts and /etc/resolv.conf - and the parent's mount/UTS namespace inodes) and refuse to touch
   any mount unless this process really is in another mount namespace than its parent: mounts here must never
   reach the host;
2. open every bind source and the generated /etc files (O_PATH) *before* mounting anything, so that a volume
   mounted over e.g. /tmp cannot hide the source of another one; mounts then use `/proc/self/fd/<n>`;
3. mount the volumes, parents before children: a tmpfs (emptyDir, mode 1777, nosuid,nodev) or a recursive bind
   of the source; a read-only bind is a bind followed by `MS_REMOUNT|MS_BIND|MS_RDONLY` (the flags of the mount
   point are kept). A missing mount point is created first - **on the host's root filesystem** (there is no
   container image), as an empty directory, or an empty file when the source is a file; it stays there;
4. bind the generated files over /etc/hosts and /etc/resolv.conf (the latter only when the machine has one)
   and set the hostname; the generated files are then deleted (the mounts keep them);
5. read_only_root: `MS_REMOUNT|MS_BIND|MS_RDONLY` on `/`. This changes only the per-mount read-only flag of
   *this namespace's copy* of the root mount, never the filesystem (the host keeps writing to it). No
   `mount --bind / /` first: tried, a mount stacked on `/` is invisible to a process whose root is the mount
   below, and `remount /` then still acts on the root mount itself. Volumes, /etc/hosts and the host's other
   mounts (/dev, /dev/shm, /proc, /sys, ...) are separate mounts and keep their own flags (writable unless
   read_only) - the way /dev/shm stays writable in a real read-only container;
6. drop privileges like `setpriv --clear-groups --regid G --reuid U`: setgroups([]), setgid, setuid; with only
   run_as_user the group is the user's group in /etc/passwd, else 0 (as containerd does); then chdir to the
   workdir (default /), as that user;
7. reset the signals Python ignores (SIGPIPE, SIGXFSZ: ignored dispositions survive exec), umask 022, and
   `execvpe(argv[0], argv, env)` with exactly spec.env (plus the default PATH when it has none; PATH is also
   what the program is searched in).

Any failure prints one line `podinit: <reason>` on stderr (the container log) and exits: 127 when the program
is not found, 126 when it cannot be executed, 125 for every other setup failure (spec, mount, hosts, identity,
workdir).
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import signal
import socket
import stat
import sys
from pathlib import Path
from typing import NoReturn

EXIT_SETUP = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000

# statvfs f_flag bits -> mount(2) flags, to keep a mount point's flags when remounting it read-only.
_KEPT_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """A container could not be set up; the message is the one line for the log."""


def fail(code: int, message: str) -> NoReturn:
    """Write `podinit: message` to stderr (the container log) and exit with `code`."""
    sys.stderr.write(f"podinit: {message}\n")
    sys.stderr.flush()
    os._exit(code)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2); raises SetupError naming what failed."""
    args = [None if value is None else value.encode() for value in (source, target, fstype, data)]
    if _libc.mount(args[0], args[1], args[2], ctypes.c_ulong(flags), args[3]) != 0:
        err = ctypes.get_errno()
        what = f"{fstype or 'bind'} {source or ''} on {target}".replace("  ", " ")
        raise SetupError(f"mount {what} failed: {os.strerror(err)}")


def remount_read_only(target: str) -> None:
    """Make the mount at `target` read-only (per-mount flag only), keeping its nosuid/nodev/noexec/atime flags."""
    kept = 0
    current = os.statvfs(target).f_flag
    for st_flag, ms_flag in _KEPT_FLAGS.items():
        if current & st_flag:
            kept |= ms_flag
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def _ns_inode(kind: str) -> int:
    return os.stat(f"/proc/self/ns/{kind}").st_ino


def make_mount_point(path: str, source_fd: int | None) -> None:
    """Create a missing mount point (on the host's root filesystem): a file for a file source, else a directory."""
    if os.path.lexists(path):
        return
    is_file = source_fd is not None and not stat.S_ISDIR(os.fstat(source_fd).st_mode)
    try:
        if is_file:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        else:
            os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"cannot create mount point {path}: {exc.strerror}") from exc


def open_path(path: str, what: str) -> int:
    """An O_PATH descriptor of `path` (resolved now, before any mount can hide it)."""
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise SetupError(f"{what} {path}: {exc.strerror}") from exc


def setup_filesystem(spec: dict, consumed: list[str]) -> None:
    """Steps 2-5 of the module docstring: volumes, /etc/hosts, read-only root.

    `consumed` (the spec file, the generated files, all read or mounted by now) are removed before the root
    becomes read-only in this namespace: afterwards they could not be.
    """
    mounts = sorted(spec.get("mounts") or [], key=lambda m: len(Path(m["path"]).parts))  # stable: parents first
    sources = {i: open_path(m["source"], "mount source") for i, m in enumerate(mounts) if m.get("source")}
    etc_fds = {target: open_path(source, "generated file") for target, source in spec["etc_files"].items()}
    # No mount event may propagate to the host, whatever the parent namespace's propagation was.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for i, m in enumerate(mounts):
        target = m["path"]
        make_mount_point(target, sources.get(i))
        if m.get("tmpfs"):
            flags = MS_NOSUID | MS_NODEV | (MS_RDONLY if m.get("read_only") else 0)
            mount("tmpfs", target, "tmpfs", flags, "mode=1777")
        else:
            mount(f"/proc/self/fd/{sources[i]}", target, None, MS_BIND | MS_REC)
            if m.get("read_only"):
                remount_read_only(target)
    for target, fd in etc_fds.items():
        if target == "/etc/hosts" or os.path.exists(target):
            mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
    for path in consumed:
        Path(path).unlink(missing_ok=True)
    if spec.get("read_only_root"):
        remount_read_only("/")
    for fd in [*sources.values(), *etc_fds.values()]:
        os.close(fd)


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """setgroups([]) + setgid + setuid, like `setpriv --clear-groups --regid G --reuid U`; nothing when both None."""
    if uid is None and gid is None:
        return
    if gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = 0
    try:
        os.setgroups([])
        os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
    except OSError as exc:
        raise SetupError(f"cannot switch to uid {uid} gid {gid}: {exc.strerror}") from exc


def exec_program(argv: list[str], env: dict[str, str]) -> NoReturn:
    """execvpe with exactly `env` (+ default PATH); on failure the runtime's exit codes (127/126)."""
    env = dict(env)
    env.setdefault("PATH", DEFAULT_PATH)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    os.umask(0o022)
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 - exec'ing the container's program is the point
    except FileNotFoundError:
        where = "" if "/" in argv[0] else " in $PATH"
        fail(EXIT_NOT_FOUND, f'exec "{argv[0]}": executable file not found{where}')
    except PermissionError:
        fail(EXIT_NOT_EXECUTABLE, f'exec "{argv[0]}": permission denied')
    except OSError as exc:
        fail(EXIT_NOT_EXECUTABLE, f'exec "{argv[0]}": {exc.strerror}')


def main(args: list[str]) -> NoReturn:
    """Set up the container described by the spec file `args[0]` and exec its program."""
    if len(args) != 1:
        fail(EXIT_SETUP, "usage: podinit <spec.json>")
    try:
        with open(args[0], encoding="utf-8") as handle:
            spec = json.load(handle)
    except (OSError, ValueError) as exc:
        fail(EXIT_SETUP, f"cannot read container spec {args[0]}: {exc}")
    try:
        if _ns_inode("mnt") == spec["parent_mnt_ns"] or _ns_inode("uts") == spec.get("parent_uts_ns"):
            raise SetupError("not in a mount/UTS namespace of its own: refusing to touch the host's mounts")
        setup_filesystem(spec, [args[0], *spec["etc_files"].values()])
        socket.sethostname(spec["hostname"])
        drop_privileges(spec.get("run_as_user"), spec.get("run_as_group"))
        workdir = spec.get("workdir") or "/"
        try:
            os.chdir(workdir)
        except OSError as exc:
            raise SetupError(f"cannot change to working directory {workdir}: {exc.strerror}") from exc
    except SetupError as exc:
        fail(EXIT_SETUP, str(exc))
    except (OSError, KeyError, TypeError) as exc:
        fail(EXIT_SETUP, f"container setup failed: {exc!r}")
    exec_program(spec["argv"], spec["env"])


if __name__ == "__main__":
    main(sys.argv[1:])
