"""The `lm` task's downstream suite: items whose answers stay on the host, graded from normalised log-probs, chance
for a model that knows nothing, and a job that scores the whole suite at full or an anchor subset at short."""
from __future__ import annotations

import numpy as np
import pytest

from evaluators import suite
from evaluators.item_selection import AnchorSet
from evaluators.tasks import get_task
from tests.eval_support import run_job
from tests.test_lm_task import TINY_CAUSAL
from wire.jobs import ItemSubset

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def heldout() -> bytes:
    from evaluators.tasks.charlm import split_blocks, synthetic_corpus
    return split_blocks(synthetic_corpus(1_000_000))[1].astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def built(heldout) -> suite.Suite:
    return suite.build(heldout, b"secret-one", items_per_scenario=60)


def outputs(whole: suite.Suite, fill) -> dict[str, np.ndarray]:
    """Log-probs for every row group, from `fill(row tokens, c) -> [c, V]` logits."""
    found = {}
    for c, where in whole.rows.groups().items():
        logits = np.stack([fill(whole.rows.tokens[r], c, r) for r in where]).astype(np.float64)
        found[f"suite_c{c}"] = (logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)).astype(np.float32)
    return found


def oracle(whole: suite.Suite):
    """Logits that put all the mass on each row's right tokens (the host's answers: what no sandbox knows)."""
    right: dict[int, bytes] = {}
    for item in whole.items:
        for row, choice in zip(item.rows, item.choices):
            if choice == item.choices[item.answer]:
                right[row] = choice
    def fill(tokens, c, r):
        logits = np.zeros((c, 256))
        if r in right:
            answer = right[r]
            logits[np.arange(c - len(answer), c), np.frombuffer(answer, np.uint8)] = 30.0
        return logits
    return fill


def test_the_suite_holds_thousands_of_items_over_its_scenarios_by_default(heldout):
    whole = suite.build(heldout, b"secret-one")
    assert len(whole.items) == 400 * len(suite.SCENARIOS) >= 2000
    assert np.bincount(whole.scenario_of).tolist() == [400] * len(suite.SCENARIOS)
    assert (whole.scenario_of == suite.scenario_labels(400)).all()
    assert whole.rows.tokens.shape[1] == suite.ROW_LEN


def test_items_are_drawn_from_the_secret_and_the_right_choice_has_no_fixed_place(heldout, built):
    again = suite.build(heldout, b"secret-one", items_per_scenario=60)
    other = suite.build(heldout, b"secret-two", items_per_scenario=60)
    assert again.fingerprint == built.fingerprint and other.fingerprint != built.fingerprint
    for item in built.items:
        if len(set(item.rows)) > 1:           # cloze, completion: each choice its own row, order shuffled
            assert len(item.rows) == len(item.choices) == 4
    answers = [item.answer for item in built.items if len(set(item.rows)) > 1]
    assert len(set(answers)) == 4, "the right choice must not sit in one place"


def test_a_model_that_knows_nothing_scores_chance_and_an_oracle_scores_one(built):
    uniform = built.grade(outputs(built, lambda tokens, c, r: np.zeros((c, 256))), 256)
    metrics = suite.scenario_scores(uniform, built.scenario_of)
    assert metrics["suite_copy"] == pytest.approx(1 / 26) and metrics["suite_cloze"] == pytest.approx(0.25)
    assert metrics["suite_recall"] == pytest.approx(0.1) and metrics["suite_counting"] == pytest.approx(1 / 9)
    assert metrics["suite_accuracy"] == 0.0          # ties are not right answers
    best = built.grade(outputs(built, oracle(built)), 256)
    assert best.scores.min() > 0.99 and best.correct.all()
    assert suite.scenario_scores(best, built.scenario_of)["suite_score"] > 0.99


def test_bad_outputs_are_refused_naming_the_rule(built):
    good = outputs(built, lambda tokens, c, r: np.zeros((c, 256)))
    missing = dict(good)
    missing.pop("suite_c1")
    with pytest.raises(suite.SuiteRefused, match="suite_c1"):
        built.grade(missing, 256)
    unnormalised = {k: np.zeros_like(v) for k, v in good.items()}        # probability 1 on every token
    with pytest.raises(suite.SuiteRefused, match="normalised_logprobs"):
        built.grade(unnormalised, 256)
    wrong = {**good, "suite_c1": good["suite_c1"][:-1]}
    with pytest.raises(suite.SuiteRefused, match="shape"):
        built.grade(wrong, 256)


def test_a_subset_grades_its_items_as_the_whole_suite_does(built):
    rng = np.random.default_rng(0)
    def noisy(tokens, c, r):
        return np.random.default_rng(int(tokens.sum()) + c).normal(size=(c, 256))
    whole = built.grade(outputs(built, noisy), 256)
    picked = rng.choice(len(built.items), size=40, replace=False)
    part, kept = built.subset(picked)
    assert sorted(kept.tolist()) == sorted(picked.tolist()) and part.forward_tokens() < built.forward_tokens() / 5
    graded = part.grade(outputs(part, noisy), 256)
    assert np.allclose(graded.scores, whole.scores[kept]) and (graded.correct == whole.correct[kept]).all()
    labels = built.scenario_of[kept]
    share = {s: 1 / (labels == s).sum() for s in set(labels.tolist())}
    anchors = AnchorSet("uniform", tuple(kept), tuple(share[s] for s in labels), tuple(labels))
    by_subset = suite.scenario_scores(suite.Graded(kept, graded.scores, graded.correct), built.scenario_of,
                                      anchors)
    plain = suite.scenario_scores(suite.Graded(kept, graded.scores, graded.correct), built.scenario_of)
    assert by_subset["suite_items"] == 40 and by_subset["suite_score"] == pytest.approx(plain["suite_score"])


def test_a_job_scores_the_whole_suite_or_the_anchor_subset_it_is_given(tmp_path):
    spec = get_task("lm").default_spec(heldout_windows=16, short_steps=5, suite_items=30)
    whole = run_job(tmp_path, TINY_CAUSAL, spec, "short", wall_seconds=120)
    assert whole.status == "ok", whole.message
    n = 30 * len(suite.SCENARIOS)
    assert whole.items is not None and len(whole.items.items) == n and whole.metrics["suite_items"] == n
    assert {f"suite_{s}" for s in suite.SCENARIOS} <= set(whole.metrics)
    picked = tuple(range(0, n, 7))
    labels = suite.scenario_labels(30)[list(picked)]
    share = {s: 1 / (labels == s).sum() for s in set(labels.tolist())}
    anchors = ItemSubset(id="t", method="uniform", items=picked, weights=tuple(share[s] for s in labels),
                         scenarios=tuple(int(s) for s in labels))
    part = run_job(tmp_path, TINY_CAUSAL, spec, "short", items=anchors, wall_seconds=120)
    assert part.status == "ok", part.message
    assert part.items.items == list(picked) and part.metrics["suite_items"] == len(picked)
    assert part.metrics["suite_forward_tokens"] < whole.metrics["suite_forward_tokens"] / 4
    # the same training seed: the subset's items get the scores the whole suite gave them
    assert np.allclose(part.items.scores, np.array(whole.items.scores)[list(picked)], atol=1e-4)
