"""Inside the sandbox: confine the calling process to a short list of readable and writable paths (Linux Landlock).

`restrict(rules)` makes the calling process, and every process it starts afterwards, unable
to read files or list directories, or to create, write, remove or rename anything, except
where a rule allows it (a path with everything beneath it, and the rights granted there). It
also keeps the process from ptrace-reading any process outside its domain (`/proc/PID/mem`,
`/proc/PID/environ`, `process_vm_readv`), as Landlock does for every restricted process. It
is irreversible and needs no privilege (Landlock is an unprivileged LSM); it sets
no-new-privileges first, as Landlock requires.

The decode task's timed passes use it (`evaluators.decoding_job`): a pass's child process
restricts itself before it imports the candidate, so the candidate cannot read the job's
inputs (later passes' prompts), the job directory on the host, the runs directory or
anything else outside the interpreter, the system's libraries and its own scratch.

What it guarantees: open(2) and friends on a path no rule covers fail with EACCES, for
paths reached by any route (symlinks, `/proc/PID/root`, `/proc/self/fd`), since Landlock
checks the file's place in the hierarchy, not the spelling. What it does not do: close
descriptors that are already open (the caller opens nothing it must keep secret before
restricting), restrict sockets, signals or abstract unix sockets on kernels before Landlock
ABI 6, or anything at all on a kernel without Landlock: `available()` says so, and the caller
decides (the decode task refuses to time a candidate it cannot confine).
"""
from __future__ import annotations

import ctypes
import os
import platform
import stat
from pathlib import Path

# syscall numbers: the same on every architecture that has Landlock (they were added after the tables were unified)
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_VERSION_FLAG = 1                      # LANDLOCK_CREATE_RULESET_VERSION: ask for the ABI version
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE = 1 << 13, 1 << 14    # ABI 2 and ABI 3
READ = READ_FILE | READ_DIR
CHANGE = (WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_BLOCK
          | MAKE_SYM)
EVERYTHING = READ | CHANGE | REFER | TRUNCATE   # what a rule on a scratch directory grants (masked to the ABI)
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE   # the rights a rule on a regular file may carry

_libc = ctypes.CDLL(None, use_errno=True)


class LandlockError(OSError):
    """The kernel refused to set up the restriction (no Landlock, or a call failed)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi() -> int:
    """The kernel's Landlock ABI version; 0 where there is none (an old kernel, Landlock off, a seccomp filter)."""
    if platform.system() != "Linux":
        return 0
    version = _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION_FLAG))
    return max(0, int(version))


def available() -> bool:
    return abi() >= 1


def restrict(rules: list[tuple[Path, int]]) -> None:
    """Confine this process (and its future children) to `rules`: (path, rights) pairs, each granting its rights on
    the path and everything beneath it (`READ`, `READ | WRITE_FILE`, `EVERYTHING`); paths that do not exist are
    skipped. Everything else can be neither read nor changed. LandlockError if the kernel cannot do it."""
    version = abi()
    if version < 1:
        raise LandlockError("this kernel offers no Landlock (Linux >= 5.13 with landlock among its LSMs)")
    handled = READ | CHANGE | (REFER if version >= 2 else 0) | (TRUNCATE if version >= 3 else 0)
    attr = _RulesetAttr(handled)
    ruleset = _libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                            ctypes.c_uint32(0))
    if ruleset < 0:
        raise LandlockError(f"landlock_create_ruleset failed: {os.strerror(ctypes.get_errno())}")
    try:
        for path, rights in rules:
            _allow(ruleset, path, rights, handled)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise LandlockError(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(ctypes.get_errno())}")
        if _libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise LandlockError(f"landlock_restrict_self failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)


def _allow(ruleset: int, path: Path, rights: int, handled: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return                                   # a path this machine does not have: nothing to allow
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS                # a rule on a file may carry only the rights a file has
        rule = _PathBeneathAttr(rights & handled, fd)
        if _libc.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule),
                         ctypes.c_uint32(0)) != 0:
            raise LandlockError(f"landlock_add_rule({path}) failed: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
