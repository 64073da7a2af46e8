"""Filesystem confinement for the process backend, run as PID 1 of the job's new namespaces.

Invoked as `python -m sandbox.confine SPEC_JSON -- COMMAND...` inside `unshare --mount --pid
--net`. Before it execs COMMAND it:
1. makes every mount private, so nothing here propagates to the host;
2. hides the home directories (a tmpfs over each), bringing back only the directories the
   job needs to run (the interpreter, the virtual environment, the project);
3. hides the job's `hidden` paths (`Limits.hidden_paths`): an empty tmpfs over each directory,
   an empty read-only file bound over each file, at the path they resolve to (so a symlink,
   `/proc/self/root/...` or a relative path reaches the cover, not what it covers);
4. gives the job a private /dev: a tmpfs holding only the harmless character devices (null,
   zero, full, random, urandom, tty), ptys, GPU device nodes (nvidia*, dri, kfd) and a fresh
   /dev/shm — no disks, so a job that is uid 0 cannot read a hidden file's blocks off the raw
   device;
5. remounts every filesystem read-only, except the job's output and scratch directories;
6. drops every capability (bounding set included) and sets no-new-privileges with `setpriv`,
   so the job cannot undo any of this even though it is uid 0 in the namespace.
If a step fails, it exits with code 111 and says which: the backend then reports that this
machine cannot confine jobs (and the conformance suite skips what depends on it).

What it does not hide: files outside the homes and the hidden paths (system files, the
project and its other runs stay readable); a hidden file's contents reachable under another
name (a hard link, or a second mount of the same filesystem at another path); a hidden path
that does not exist yet when the job starts (the warm workers' host side re-checks this).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
from pathlib import Path

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 32, 1024, 2048, 4096, 8192, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
MNT_DETACH = 2
KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
              "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
SKIP_READONLY = ("/proc", "/dev/pts")   # proc is the namespace's own; ptys must stay writable
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")       # what any program may open
GPU_DEVICES = ("nvidia", "dri", "kfd")   # NVIDIA (nvidia0, nvidiactl, nvidia-uvm, nvidia-caps/), DRM, AMD ROCm
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}
EXIT_CANNOT_CONFINE = 111

_libc = ctypes.CDLL(None, use_errno=True)


class ConfineError(RuntimeError):
    pass


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        errno = ctypes.get_errno()
        raise ConfineError(f"mount({source}, {target}, {fstype}, {flags:#x}) failed: {os.strerror(errno)}")


def unmount(target: str) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        raise ConfineError(f"umount({target}) failed: {os.strerror(ctypes.get_errno())}")


def mount_points() -> list[tuple[str, int]]:
    """(mount point, flags to keep) for every mount, in mount order."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")
        flags = sum(KEPT_FLAGS.get(opt, 0) for opt in fields[5].split(","))
        found.append((point, flags))
    return found


def hide(home: Path, keep: list[Path], staging: Path) -> None:
    """A tmpfs over `home` holding bind mounts of only the `keep` paths that lie inside it."""
    staging.mkdir(parents=True, exist_ok=True)
    mount("tmpfs", str(staging), "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for path in keep:
        try:
            inner = path.relative_to(home)
        except ValueError:
            continue
        target = staging / inner
        target.mkdir(parents=True, exist_ok=True)
        mount(str(path), str(target), None, MS_BIND | MS_REC)
    mount(str(staging), str(home), None, MS_MOVE)


def cover(paths: list[Path], staging: Path) -> None:
    """Hide each of `paths` (resolved): an empty tmpfs over a directory, an empty file over anything else.

    Outer paths first; a path already under a covered directory is gone and needs nothing. The
    empty file lives on a small tmpfs that is made read-only and then detached, so it is
    reachable only through the binds over the hidden files."""
    files = []
    for path in sorted(paths, key=lambda p: len(p.parts)):
        if not os.path.lexists(path):          # not there, or under a directory covered already
            continue
        if path.is_dir():
            mount("tmpfs", str(path), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=755")
        else:
            files.append(path)
    if not files:
        return
    staging.mkdir(parents=True, exist_ok=True)
    mount("tmpfs", str(staging), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=755")
    empty = staging / "empty"
    empty.touch(mode=0o444)
    mount(None, str(staging), None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path in files:
        if os.path.lexists(path):
            mount(str(empty), str(path), None, MS_BIND)
    unmount(str(staging))


def private_dev(staging: Path) -> None:
    """Replace /dev with a tmpfs holding the harmless devices, ptys, GPUs and a fresh /dev/shm (step 4)."""
    staging.mkdir(parents=True, exist_ok=True)
    mount("tmpfs", str(staging), "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    host = Path("/dev")
    wanted = [host / name for name in DEVICES] + sorted(
        entry for entry in host.iterdir() if entry.name.startswith(GPU_DEVICES))
    for source in wanted:
        if not source.exists() or source.is_symlink():
            continue
        target = staging / source.name
        if source.is_dir():
            target.mkdir()
        else:
            target.touch()
        mount(str(source), str(target), None, MS_BIND | MS_REC)
    (staging / "pts").mkdir()
    if (host / "pts").is_dir():
        mount(str(host / "pts"), str(staging / "pts"), None, MS_BIND | MS_REC)
    (staging / "shm").mkdir()
    mount("tmpfs", str(staging / "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    for name, target in DEV_LINKS.items():
        (staging / name).symlink_to(target)
    mount(str(staging), "/dev", None, MS_MOVE)


def confine(spec: dict) -> None:
    # resolved before anything moves: a symlink to a hidden file must lead to its cover
    hidden = [Path(os.path.realpath(p)) for p in spec.get("hidden", [])]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    writable = [Path(p) for p in spec["writable"]]
    keep = [Path(p) for p in spec["keep"]]
    scratch = writable[-1]
    for i, home in enumerate(Path(p) for p in spec["hide"]):
        if home.is_dir() and not any(w == home or home in w.parents for w in writable):
            hide(home, keep, scratch / f".hide-{i}")
    for path in writable:
        mount(str(path), str(path), None, MS_BIND | MS_REC)
    cover(hidden, scratch / ".hidden")
    private_dev(scratch / ".dev")
    keep_writable = {str(p) for p in writable} | {"/dev/shm"}
    for point, flags in mount_points():
        if point in keep_writable or point.startswith(SKIP_READONLY) or any(
                point.startswith(w + "/") for w in keep_writable):
            continue
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except ConfineError:
            if point == "/":
                raise


def main(argv: list[str]) -> int:
    if "--" not in argv or len(argv) < 3:
        print("usage: python -m sandbox.confine SPEC_JSON -- COMMAND...", file=sys.stderr)
        return 2
    split = argv.index("--")
    spec = json.loads(argv[0])
    command = argv[split + 1:]
    try:
        confine(spec)
        os.chdir(os.getcwd())       # re-resolve the working directory through its new (writable) mount
    except (ConfineError, OSError) as exc:
        print(f"archlab confine: cannot confine the job: {exc}", file=sys.stderr)
        return EXIT_CANNOT_CONFINE
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        print("archlab confine: setpriv (util-linux) is missing; cannot drop capabilities", file=sys.stderr)
        return EXIT_CANNOT_CONFINE
    os.execv(setpriv, [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs",
                       "--", *command])
    return EXIT_CANNOT_CONFINE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
