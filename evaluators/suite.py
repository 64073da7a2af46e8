"""The `lm` task's downstream suite: several scenarios of multiple-choice items, built and graded on the host.

Why a suite beside bits per byte: the loss averages over every next byte; a researcher also
asks what a model can *do*, and two architectures of one loss differ there (attention copies
and recalls in context, a recurrence of fixed state does not; Zoology and MAD use such
probes to separate them). So each candidate at `full` is scored item by item on:

- `cloze`: a word of held-out text, against three distractor words of the same length
  taken from elsewhere in the held-out text (the language's vocabulary and its class
  bigrams: what the loss measures, as a decision);
- `completion`: the rest of a word begun at the end of the context, against the rests of
  other words of the same length (spelling);
- `copy`: a random letter string is repeated after a separator; the next letter of the copy;
- `induction`: a letter pair `a b` inside random letters; after a later `a`, the letter `b`;
- `recall`: key=value pairs (letters to digits), then a key again; its value;
- `brackets`: a prefix of nested brackets of four kinds; the bracket that closes the innermost;
- `counting`: a run of one letter, then ` = `; its length as a digit.

The last five are in-context abilities the synthetic language does not teach directly: small
models sit near chance there and differ in how far above chance they are; they are the items
where anchors matter most (many are uninformative). Every scenario has `items` items
(400 by default: 2,800 in all).

**Scoring an item.** An item has choices (token sequences) and one right answer. The host
sends rows of `ROW_LEN` tokens (left-filled with held-out text so the model sees the kind of
text it was trained on); the sandbox returns log-probabilities over the whole vocabulary at
the last `c` positions of each row (`c` = the longest choice scored on that row), grouped by
`c` (`suite_c{c}.npy`, [rows, c, V]); the host checks they are finite and normalised and adds
up each choice's log-likelihood itself. An item's score is the probability the model puts on
the right choice among the choices (softmax of the choices' log-likelihoods: expected
accuracy, continuous, what Anchor Points scores), and `correct` is whether the right choice
has the strictly highest log-likelihood (ties lose). A scenario's score is the mean over its
items; the suite's score (`suite_score`) is the mean over scenarios.

**What stays on the host.** The items are drawn from the held-out text and the host's secret;
single-row items (`copy` ... `counting`) never show the answer (the row ends before it), and
for multi-row items (`cloze`, `completion`) each choice is its own row and the choices' order
is shuffled, so which row is right is known only here.

What this does not do: tokenisers other than bytes (the items are byte strings; a
`prepare-data` directory with another tokenizer gets no suite), or generation-scored items
(`archlab lm-eval` runs the standard generative benchmarks on a candidate).
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from evaluators.heldout import seed as seed_of
from wire.jobs import SUITE_PREFIX

SCENARIOS = ("cloze", "completion", "copy", "induction", "recall", "brackets", "counting")
ROW_LEN = 64                    # tokens per row: at most the bottom rung's sequence length
NORM_TOLERANCE = 1e-3           # |log-sum-exp| a normalised position may have (float32 log_softmax is ~1e-6)
LETTERS = b"abcdefghijklmnopqrstuvwxyz"
DIGITS = b"0123456789"
OPEN, CLOSE = b"([{<", b")]}>"


class SuiteRefused(ValueError):
    """The suite outputs break a rule (missing, wrong shape, not finite, not normalised); the message names it."""


@dataclass(frozen=True)
class Item:
    """One multiple-choice item (host only): its scenario, the rows its choices are scored on, the choices'
    tokens, and which choice is right."""

    scenario: int
    rows: tuple[int, ...]            # global row index per choice; a single-row item repeats one row
    choices: tuple[bytes, ...]
    answer: int


@dataclass(frozen=True)
class Rows:
    """What the sandbox scores: every row's tokens and how many last positions it returns for each."""

    tokens: np.ndarray               # [rows, ROW_LEN] int64
    scored: np.ndarray               # [rows] positions scored (the longest choice on that row)

    def groups(self) -> dict[int, np.ndarray]:
        """{c: row indices} for each number of scored positions: one input (and output) file per c."""
        return {int(c): np.flatnonzero(self.scored == c) for c in np.unique(self.scored)}


@dataclass(frozen=True)
class Graded:
    """Graded items, as arrays (the host's working form; `wire.jobs.ItemScores` is the record a result carries): per
    item, the probability on the right choice and whether the top choice is right."""

    items: np.ndarray                # item indices in the suite
    scores: np.ndarray               # [n] float in [0, 1]
    correct: np.ndarray              # [n] int 0/1


@dataclass(frozen=True)
class Suite:
    """The suite's items (host side) and the rows that score them."""

    items: tuple[Item, ...]
    rows: Rows
    fingerprint: str                 # what items mean: the same fingerprint, the same items

    @cached_property
    def scenario_of(self) -> np.ndarray:
        return np.array([item.scenario for item in self.items], dtype=np.int64)

    def subset(self, indices) -> tuple[Suite, np.ndarray]:
        """The suite restricted to items `indices` (rows re-packed), and the original index of each kept item."""
        indices = np.asarray(sorted({int(i) for i in indices}), dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self.items)):
            raise ValueError(f"item indices must lie in [0, {len(self.items)}); got {indices.min()}..{indices.max()}")
        keep_rows = sorted({r for i in indices for r in self.items[i].rows})
        new_row = {old: new for new, old in enumerate(keep_rows)}
        items = tuple(Item(it.scenario, tuple(new_row[r] for r in it.rows), it.choices, it.answer)
                      for it in (self.items[i] for i in indices))
        rows = Rows(self.rows.tokens[keep_rows], self.rows.scored[keep_rows])
        return Suite(items, rows, self.fingerprint), indices

    def inputs(self) -> dict[str, np.ndarray]:
        """The sandbox's inputs: {"suite_c{c}": [rows, ROW_LEN] int64} per group."""
        return {f"suite_c{c}": self.rows.tokens[where] for c, where in self.rows.groups().items()}

    def forward_tokens(self) -> int:
        """Tokens the sandbox runs forward to score this suite (its evaluation compute)."""
        return int(self.rows.tokens.size)

    def grade(self, outputs: dict[str, np.ndarray], vocab_size: int) -> Graded:
        """Item scores from the sandbox's outputs ({"suite_c{c}": [rows, c, V] log-probs}); `SuiteRefused` names the
        rule a bad output breaks."""
        per_row: dict[int, np.ndarray] = {}
        for c, where in self.rows.groups().items():
            name = f"suite_c{c}"
            if name not in outputs:
                raise SuiteRefused(f"the job returned no {name}.npy (rule: suite_outputs)")
            found = np.asarray(outputs[name])
            expected = (len(where), c, vocab_size)
            if found.dtype.kind != "f" or tuple(found.shape) != expected:
                raise SuiteRefused(f"{name} has shape {tuple(found.shape)} and dtype {found.dtype}; expected float "
                                   f"{expected} (rule: suite_outputs)")
            found = found.astype(np.float64)
            if not np.isfinite(found).all():
                raise SuiteRefused(f"{name} holds NaN or inf (rule: suite_outputs)")
            worst = float(np.abs(np.logaddexp.reduce(found, axis=-1)).max()) if found.size else 0.0
            if worst > NORM_TOLERANCE:
                raise SuiteRefused(f"{name} are not normalised log-probabilities (log-sum-exp {worst:.3g}); return "
                                   "log_softmax over the vocabulary (rule: normalised_logprobs)")
            for k, row in enumerate(where):
                per_row[int(row)] = found[k]
        scores = np.empty(len(self.items))
        correct = np.zeros(len(self.items), dtype=np.int64)
        for n, item in enumerate(self.items):
            likelihood = np.array([_loglikelihood(per_row[row], choice)
                                   for row, choice in zip(item.rows, item.choices)])
            probs = np.exp(likelihood - likelihood.max())
            probs /= probs.sum()
            scores[n] = probs[item.answer]
            best = likelihood.max()
            correct[n] = int(likelihood[item.answer] == best and (likelihood == best).sum() == 1)
        return Graded(np.arange(len(self.items)), scores, correct)


def _loglikelihood(logprobs: np.ndarray, choice: bytes) -> float:
    """Sum of log-probs of `choice`'s tokens at the last len(choice) scored positions of one row ([c, V])."""
    tail = logprobs[len(logprobs) - len(choice):]
    return float(tail[np.arange(len(choice)), np.frombuffer(choice, dtype=np.uint8)].sum())


def scenario_scores(graded: Graded, scenario_of: np.ndarray, anchors=None, names=SCENARIOS) -> dict[str, float]:
    """The metrics a job reports: `suite_<scenario>` per scenario (the mean item score; for an anchor set,
    `evaluators.item_selection.AnchorSet`, its weighted and calibrated estimate of that mean), `suite_score` (their
    mean: each scenario weighs the same), `suite_accuracy` (the same over `correct`, weighted but not calibrated)
    and `suite_items` (how many items were scored: fewer than the suite's, and the scores are estimates)."""
    labels = scenario_of[graded.items]
    present = sorted(set(labels.tolist()))
    if anchors is None:
        per = [float(graded.scores[labels == s].mean()) for s in present]
        accuracy = [float(graded.correct[labels == s].mean()) for s in present]
    else:
        from evaluators import item_selection
        position = {int(i): k for k, i in enumerate(graded.items)}
        order = [position[int(i)] for i in anchors.items]        # the set's item order
        per = item_selection.scenario_estimates(anchors, graded.scores[order][None, :])[0].tolist()
        uncalibrated = dataclasses.replace(anchors, offsets=(), scales=())
        accuracy = item_selection.scenario_estimates(uncalibrated, graded.correct[order][None, :].astype(float))[0]
        present = list(anchors.labels)
    metrics = {f"{SUITE_PREFIX}{names[s]}": float(v) for s, v in zip(present, per)}
    metrics.update({"suite_score": float(np.mean(per)), "suite_accuracy": float(np.mean(accuracy)),
                    "suite_items": float(len(graded.items))})
    return metrics


# --- building the items (host) ---------------------------------------------------------------------------------------
def build(heldout: bytes, secret: bytes, items_per_scenario: int = 400) -> Suite:
    """The suite drawn from the held-out text `heldout` and the host's secret (deterministic given both)."""
    rng = np.random.default_rng(seed_of(secret, "suite", hashlib.sha256(heldout).hexdigest(), items_per_scenario))
    words = sorted(set(re.findall(rb"\b[a-z]{3,8}\b", heldout)))
    if len(heldout) < 4 * ROW_LEN or len(words) < 8:
        raise ValueError("the held-out text is too short (or has too few words) for the downstream suite")
    maker = _Maker(heldout, words, rng)
    for scenario, name in enumerate(SCENARIOS):
        make = getattr(maker, name)
        for _ in range(items_per_scenario):
            make(scenario)
    fingerprint = hashlib.sha256(np.ascontiguousarray(maker.tokens()).tobytes()
                                 + repr([(i.choices, i.answer) for i in maker.items]).encode()).hexdigest()[:16]
    return Suite(tuple(maker.items), Rows(maker.tokens(), np.array(maker.scored, dtype=np.int64)), fingerprint)


def scenario_labels(items_per_scenario: int) -> np.ndarray:
    """Each item's scenario, without building the suite (items are laid out scenario by scenario)."""
    return np.repeat(np.arange(len(SCENARIOS)), items_per_scenario)


class _Maker:
    """Draws items one at a time into rows; one method per scenario, named as in SCENARIOS."""

    def __init__(self, heldout: bytes, words: list[bytes], rng: np.random.Generator):
        self.text, self.words, self.rng = heldout, words, rng
        self.by_length: dict[int, list[bytes]] = {}
        for w in words:
            self.by_length.setdefault(len(w), []).append(w)
        self.rows: list[bytes] = []
        self.scored: list[int] = []
        self.items: list[Item] = []

    def tokens(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.rows), dtype=np.uint8).reshape(-1, ROW_LEN).astype(np.int64)

    def _filled(self, body: bytes) -> bytes:
        """`body` left-filled to ROW_LEN with held-out text (ending at a sentence's end, as text does)."""
        need = ROW_LEN - len(body)
        if need <= 0:
            return body[-ROW_LEN:]
        start = int(self.rng.integers(0, len(self.text) - need))
        return self.text[start:start + need - 2] + b". " + body if need >= 2 else b" " * need + body

    def _row(self, body: bytes, scored: int) -> int:
        self.rows.append(self._filled(body))
        self.scored.append(scored)
        return len(self.rows) - 1

    def _single(self, scenario: int, context: bytes, answer: int, alphabet: bytes) -> None:
        """An item scored at the row's last position: the choices are the alphabet's letters, one of them right."""
        row = self._row(context, 1)
        choices = tuple(bytes([a]) for a in alphabet)
        self.items.append(Item(scenario, (row,) * len(choices), choices, alphabet.index(answer)))

    def _multi(self, scenario: int, context: bytes, right: bytes, wrong: list[bytes]) -> None:
        """An item whose choices (shuffled) are continuations of `context`, each scored on its own row."""
        choices = [right, *wrong]
        order = self.rng.permutation(len(choices))
        choices = [choices[k] for k in order]
        rows = tuple(self._row(context + choice[:-1], len(choice)) for choice in choices)
        self.items.append(Item(scenario, rows, tuple(choices), int(np.flatnonzero(order == 0)[0])))

    def _word_at(self) -> tuple[int, bytes]:
        """A held-out word of 3-8 letters that starts after a space, and where it starts."""
        while True:
            at = int(self.rng.integers(ROW_LEN, len(self.text) - 16))
            found = re.match(rb" ([a-z]{3,8})\b", self.text[at:at + 12])
            if found and len(self.by_length.get(len(found.group(1)), [])) >= 4:
                return at + 1, found.group(1)

    def _others(self, word: bytes, n: int, same=lambda w: True) -> list[bytes]:
        pool = [w for w in self.by_length[len(word)] if w != word and same(w)]
        if len(pool) < n:
            pool = [w for w in self.by_length[len(word)] if w != word]
        return [pool[k] for k in self.rng.choice(len(pool), size=n, replace=False)]

    def _draw(self, alphabet, n: int) -> bytes:
        """`n` symbols of `alphabet` drawn with replacement."""
        return bytes(int(x) for x in self.rng.choice(list(alphabet), size=n))

    def cloze(self, scenario: int) -> None:
        at, word = self._word_at()
        self._multi(scenario, self.text[at - (ROW_LEN - len(word)):at], word, self._others(word, 3))

    def completion(self, scenario: int) -> None:
        at, word = self._word_at()
        cut = int(self.rng.integers(1, len(word) - 1))
        rest = word[cut:]
        others = [w[cut:] for w in self._others(word, 3, lambda w: w[cut:] != rest)]
        self._multi(scenario, self.text[at + cut - (ROW_LEN - len(rest)):at + cut], rest, others)

    def copy(self, scenario: int) -> None:
        letters = self._draw(LETTERS, int(self.rng.integers(6, 13)))
        k = int(self.rng.integers(1, len(letters)))
        self._single(scenario, b"copy " + letters + b" | " + letters[:k], letters[k], LETTERS)

    def induction(self, scenario: int) -> None:
        a, b = (int(x) for x in self.rng.choice(list(LETTERS), size=2, replace=False))
        noise = [x for x in LETTERS if x not in (a, b)]
        before = self._draw(noise, int(self.rng.integers(3, 12)))
        after = self._draw(noise, int(self.rng.integers(3, 12)))
        self._single(scenario, before + bytes([a, b]) + after + bytes([a]), b, LETTERS)

    def recall(self, scenario: int) -> None:
        keys = self.rng.choice(list(LETTERS), size=int(self.rng.integers(3, 9)), replace=False)
        values = self.rng.choice(list(DIGITS), size=len(keys))
        pairs = b" ".join(bytes([k]) + b"=" + bytes([v]) for k, v in zip(keys, values))
        asked = int(self.rng.integers(len(keys)))
        self._single(scenario, pairs + b". " + bytes([keys[asked]]) + b"=", int(values[asked]), DIGITS)

    def brackets(self, scenario: int) -> None:
        stack, out = [], []
        for _ in range(int(self.rng.integers(4, 20))):
            if stack and self.rng.random() < 0.45:
                out.append(CLOSE[stack.pop()])
            else:
                kind = int(self.rng.integers(4))
                stack.append(kind)
                out.append(OPEN[kind])
        if not stack:
            kind = int(self.rng.integers(4))
            stack.append(kind)
            out.append(OPEN[kind])
        self._single(scenario, bytes(out), CLOSE[stack[-1]], CLOSE)

    def counting(self, scenario: int) -> None:
        letter = int(self.rng.choice(list(LETTERS)))
        n = int(self.rng.integers(1, 10))
        self._single(scenario, bytes([letter]) * n + b" = ", DIGITS[n], DIGITS[1:])
