"""Filesystem confinement for the process backend, run as PID 1 of the job's new namespaces.

Invoked as `python -m sandbox.confine SPEC_JSON -- COMMAND...` inside `unshare --mount --pid
--net`. Before it execs COMMAND it:
1. makes every mount private, so nothing here propagates to the host;
2. hides the home directories (a tmpfs over each), bringing back only the directories the
   job needs to run (the interpreter, the virtual environment, the project);
3. remounts every filesystem read-only, except the job's output and scratch directories;
4. gives the job a private /dev/shm;
5. drops every capability (bounding set included) and sets no-new-privileges with `setpriv`,
   so the job cannot undo any of this even though it is uid 0 in the namespace.
If a step fails, it exits with code 111 and says which: the backend then reports that this
machine cannot confine jobs (and the conformance suite skips what depends on it).
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
KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
              "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
SKIP_READONLY = ("/proc", "/dev/pts")   # proc is the namespace's own; ptys must stay writable
EXIT_CANNOT_CONFINE = 111

_libc = ctypes.CDLL(None, use_errno=True)


class ConfineError(RuntimeError):
    pass


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        errno = ctypes.get_errno()
        raise ConfineError(f"mount({source}, {target}, {fstype}, {flags:#x}) failed: {os.strerror(errno)}")


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


def confine(spec: dict) -> None:
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    writable = [Path(p) for p in spec["writable"]]
    keep = [Path(p) for p in spec["keep"]]
    scratch = writable[-1]
    for i, home in enumerate(Path(p) for p in spec["hide"]):
        if home.is_dir() and not any(w == home or home in w.parents for w in writable):
            hide(home, keep, scratch / f".hide-{i}")
    for path in writable:
        mount(str(path), str(path), None, MS_BIND | MS_REC)
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
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
