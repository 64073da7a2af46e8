"""Search/replace edits: the coder's answer as changes to a module it was shown, and applying them.

The format is the one AlphaEvolve, OpenEvolve and aider use, one block per change:

    <<<<<<< SEARCH
    the exact lines of the module to change
    =======
    the lines that replace them
    >>>>>>> REPLACE

`read_edits(text)` pulls every block out of an answer (inside or outside a code fence, with
5 to 9 markers each). `apply_edits(source, edits)` applies them in order, each to the module
as the earlier ones left it. A block's SEARCH text must occur exactly once: first as written,
then line by line ignoring trailing spaces (a model often drops them). A block that is not
found, or found several times, makes the whole answer fail with one sentence per block saying
which block, what happened and, for a block not found, the closest line of the module with its
number, so the model can copy the right text. An empty SEARCH is refused (it says nothing about
where the change goes).

What it does not do: judge the edited module (the engine parses it, the graph's check runs it)
or talk to a model. Nothing here raises on bad input.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

BLOCK = re.compile(r"^[ \t]*<{5,9}[ \t]*SEARCH[^\n]*\n(.*?)^[ \t]*={5,9}[ \t]*\n(.*?)^[ \t]*>{5,9}[ \t]*REPLACE[^\n]*$",
                   re.DOTALL | re.MULTILINE)
MARKER = re.compile(r"^[ \t]*(<{5,9}[ \t]*SEARCH|>{5,9}[ \t]*REPLACE)", re.MULTILINE)
OPENING = re.compile(r"^[ \t]*<{5,9}[ \t]*SEARCH", re.MULTILINE)


@dataclass(frozen=True)
class Edit:
    search: str
    replace: str


@dataclass(frozen=True)
class EditProblem:
    """Why block `index` (1-based) did not apply."""
    index: int
    reason: str                 # "not found" | "found N times (at lines ...)" | "empty search"
    closest: str = ""           # for "not found": the closest line of the module, "line N: `text`" ("" when none)

    def text(self) -> str:
        if self.reason == "empty search":
            return f"edit {self.index} has an empty SEARCH part; copy the lines to change from the module"
        if self.reason.startswith("found"):
            return (f"edit {self.index}: its SEARCH text was {self.reason} in the module; add neighbouring lines "
                    "to it so that it matches exactly one place")
        hint = f"; the closest line of the module is {self.closest}" if self.closest else ""
        return f"edit {self.index}: its SEARCH text was not found in the module{hint}"


@dataclass
class Applied:
    """The outcome of applying an answer's edits: the new source, or the problems (then `source` is None)."""
    source: str | None
    problems: list[EditProblem] = field(default_factory=list)
    applied: int = 0

    def reason(self) -> str:
        """Every problem in one message the model can act on."""
        return "; ".join(p.text() for p in self.problems)


def read_edits(text: str) -> list[Edit]:
    """The SEARCH/REPLACE blocks of `text`, in order; [] when there are none."""
    return [Edit(_body(search), _body(replace)) for search, replace in BLOCK.findall(text)]


def has_markers(text: str) -> bool:
    """Whether the answer tried the edit format (so a malformed block is reported rather than ignored)."""
    return bool(MARKER.search(text))


def count_markers(text: str) -> int:
    """How many blocks the answer opened (more than `read_edits` found: one was cut off or malformed)."""
    return len(OPENING.findall(text))


def apply_edits(source: str, edits: list[Edit]) -> Applied:
    """`source` with every edit applied in order, or the problem of each edit that did not apply."""
    problems: list[EditProblem] = []
    current = source
    for index, edit in enumerate(edits, start=1):
        if not edit.search.strip():
            problems.append(EditProblem(index, "empty search"))
            continue
        spans = _find(current, edit.search)
        if len(spans) == 1:
            start, end = spans[0]
            current = current[:start] + _as_block(edit.replace, current[start:end]) + current[end:]
            continue
        if spans:
            problems.append(EditProblem(index, f"found {len(spans)} times (at lines "
                                               f"{', '.join(str(current.count(chr(10), 0, s) + 1) for s, _ in spans[:5])})"))
        else:
            problems.append(EditProblem(index, "not found", _closest(current, edit.search)))
    if problems:
        return Applied(None, problems, len(edits) - len(problems))
    return Applied(current, [], len(edits))


def _body(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def _as_block(replace: str, matched: str) -> str:
    """The replacement, ending in a newline exactly when the matched text did."""
    if matched.endswith("\n") and replace and not replace.endswith("\n"):
        return replace + "\n"
    return replace


def _find(source: str, search: str) -> list[tuple[int, int]]:
    """(start, end) of each place `search` matches: exactly, else as whole lines ignoring trailing whitespace."""
    exact = [(m.start(), m.start() + len(search)) for m in re.finditer(re.escape(search), source)]
    if exact:
        return exact
    wanted = [line.rstrip() for line in search.strip("\n").splitlines()]
    if not wanted:
        return []
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    found = []
    for i in range(len(lines) - len(wanted) + 1):
        if all(lines[i + j].rstrip() == wanted[j] for j in range(len(wanted))):
            found.append((offsets[i], offsets[i + len(wanted)]))
    return found


def _closest(source: str, search: str) -> str:
    """The module's line most like the SEARCH part's first non-blank line, as 'line N: `text`' ("" when none is close).

    A line is compared whole and by its start (as long as the searched line): a model that got one value of a long
    line wrong should be shown that line.
    """
    first = next((line.strip() for line in search.splitlines() if line.strip()), "")
    best, where = 0.0, -1
    lines = source.splitlines()
    for number, line in enumerate(lines):
        text = line.strip()
        if not text:
            continue
        score = max(difflib.SequenceMatcher(None, first, text).ratio(),
                    difflib.SequenceMatcher(None, first, text[:len(first)]).ratio())
        if score > best:
            best, where = score, number
    if where < 0 or best < 0.5:
        return ""
    return f"line {where + 1}: `{lines[where].rstrip()[:200]}`"
