"""Host side: the secret that held-out data is drawn from, and the harness's rule that uses it.

The rule (DESIGN.md, "Scores that cannot be gamed"): nothing a candidate can read or compute
inside the sandbox reveals held-out targets. Two ways out of reach, and every task uses one:
- **drawn from a secret**: the held-out set is a function of a host secret (`machine_secret`,
  32 random bytes made once per user and machine), so knowing the task's code, its options
  and every public seed is not enough to regenerate it (MQAR's queries, which windows of a
  corpus are held out, the default charlm corpus itself);
- **hidden on disk**: files the held-out set is read from are declared by the task
  (`Task.host_only_paths`) and hidden from the job by the sandbox (`Limits.hidden_paths`,
  capability `hidden_paths`): scikit-learn's digits, a user's corpus file.
`check_rule` enforces it for every task, shipped or not, before any held-out set leaves the
host: a task whose held-out targets come out the same under two different secrets and that
declares no hidden paths is refused (`HeldoutRuleError`), since its targets are then a
function of public information.

Where the secret lives: `~/.local/share/archlab/secrets/heldout.key` (mode 0600). Home
directories are hidden from confined process jobs and never mounted into containers, so a
job cannot read it; a sandbox that cannot hide them lacks the capability `hidden_home`, and
the harness then refuses to score held-out data in it. The key is per machine: the same
task on another machine draws another held-out set of the same distribution (numbers agree
within noise, not exactly); copy the key file to reproduce a run's held-out set elsewhere.

What this does not cover: a task that writes its held-out targets into the job itself (the
harness never does; `Task.heldout` returns them to the host only), and public data that a
user points a task at without declaring it (their corpus inside the project tree, say).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import numpy as np

KEY_BYTES = 32


class HeldoutRuleError(RuntimeError):
    """A task's held-out set is within the candidate's reach (the task's fault, not the candidate's)."""


def secrets_dir() -> Path:
    """Where the host's secrets live: a home directory, which no sandbox job can read."""
    return Path.home() / ".local" / "share" / "archlab" / "secrets"


def machine_secret() -> bytes:
    """This user's held-out secret on this machine, made on first use (atomically: concurrent runs agree)."""
    path = secrets_dir() / "heldout.key"
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
        raise HeldoutRuleError(f"{path} holds {len(key)} bytes, not {KEY_BYTES}: it is damaged; delete it and a new "
                               "key is made (held-out sets then change)")
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".heldout.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES))
        try:
            os.link(tmp, path)              # the first writer wins; the others read its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    except OSError as exc:
        raise HeldoutRuleError(f"cannot keep the held-out secret at {path}: {exc}; archlab needs a writable home "
                               "directory (set HOME to one) so that held-out data stays out of the sandbox's reach"
                               ) from exc
    return path.read_bytes()


def derive(secret: bytes, *parts: object) -> bytes:
    """A sub-secret for one purpose (HMAC-SHA256): knowing one derived value reveals neither the key nor another."""
    message = "\x1f".join(str(p) for p in parts).encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def seed(secret: bytes, *parts: object) -> int:
    """A 63-bit generator seed for one purpose, derived from `secret` (for torch or numpy generators)."""
    return int.from_bytes(derive(secret, *parts)[:8], "big") >> 1


_CHECKED: set[tuple[type, str, str]] = set()   # (task, spec) pairs that passed: the check costs two held-out draws


def check_rule(task, spec) -> None:
    """Refuse a task whose held-out targets are a function of public information (see the module docstring)."""
    key = (type(task), task.name, spec.model_dump_json())
    if key in _CHECKED or task.host_only_paths(spec):
        return
    _, first = task.heldout(spec, derive(b"archlab-rule-check", 1))
    _, second = task.heldout(spec, derive(b"archlab-rule-check", 2))
    if np.array_equal(np.asarray(first), np.asarray(second)):
        raise HeldoutRuleError(
            f"task {task.name!r} draws the same held-out targets whatever the host's secret is, and declares no "
            "files to hide: a candidate could regenerate or read them inside the sandbox. Draw the held-out set "
            "from the `secret` passed to heldout(spec, secret) (evaluators.heldout.seed), or declare the files it "
            "is read from in host_only_paths(spec)")
    _CHECKED.add(key)
