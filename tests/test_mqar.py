import numpy as np
import torch

from evaluators.tasks import get_task
from evaluators.tasks.mqar import IGNORE, make_mqar

task = get_task("mqar")


def test_mqar_is_deterministic_and_well_formed():
    a, ta = make_mqar(16, 64, 64, 8, 8, torch.Generator().manual_seed(3))
    b, tb = make_mqar(16, 64, 64, 8, 8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(ta, tb)
    c, _ = make_mqar(16, 64, 64, 8, 8, torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)
    for tokens, targets in zip(a, ta):
        keys, values = tokens[0:16:2].tolist(), tokens[1:16:2].tolist()
        assert len(set(keys)) == 8 and all(1 <= k < 32 for k in keys) and all(32 <= v < 64 for v in values)
        positions = (targets != IGNORE).nonzero().flatten().tolist()
        assert len(positions) == 8
        for p in positions:
            key = tokens[p].item()
            expected = values[keys.index(key)]
            assert targets[p].item() == expected          # the answer is the key's value
            assert tokens[p + 1].item() == expected       # and it follows the query key in training data


SECRET = b"k" * 32


def test_heldout_inputs_never_contain_the_answers():
    spec = task.default_spec()
    inputs, answers = task.heldout(spec, SECRET)
    tokens, positions = inputs["tokens"], inputs["positions"]
    assert answers.shape == (spec.heldout_size, 8)
    following = np.take_along_axis(tokens, positions + 1, axis=1)
    assert (following == 0).all()                         # blanked on the host
    again, _ = task.heldout(spec, SECRET)
    assert np.array_equal(again["tokens"], tokens)        # one secret, one held-out set: candidates are compared on it


def test_heldout_set_comes_from_the_secret_not_from_a_public_seed():
    spec = task.default_spec()
    inputs, answers = task.heldout(spec, SECRET)
    other, other_answers = task.heldout(spec, b"j" * 32)
    assert not np.array_equal(other["tokens"], inputs["tokens"]) and not np.array_equal(other_answers, answers)
    # whatever public seed a candidate tries (the spec's, the old fixed one, small integers), it draws other sequences
    # (the key-value context opens each sequence and is never blanked: it identifies a sequence)
    seen = {row[:16].tobytes() for row in inputs["tokens"]}
    for public in [spec.seed, 10_000_019 + spec.seed, *range(64)]:
        tried, _ = make_mqar(spec.heldout_size, spec.vocab_size, spec.seq_len, 8, 8,
                             torch.Generator().manual_seed(public))
        assert not any(row[:16].numpy().tobytes() in seen for row in tried)


def test_score_counts_correct_queries():
    spec = task.default_spec()
    _, answers = task.heldout(spec, SECRET)
    perfect = np.full((*answers.shape, spec.vocab_size), -5.0, dtype=np.float32)
    np.put_along_axis(perfect, answers[..., None], 5.0, axis=-1)
    assert task.score(spec, perfect, answers)["accuracy"] == 1.0
    half = perfect.copy()
    half[: spec.heldout_size // 2] = 0.0
    half[: spec.heldout_size // 2, :, 0] = 1.0            # always predicts token 0: never a value
    assert abs(task.score(spec, half, answers)["accuracy"] - 0.5) < 1e-9


def test_bad_recipe_is_refused_with_the_setting_named():
    import pytest
    with pytest.raises(ValueError, match="seq_len"):
        task.default_spec(seq_len=20, num_pairs=8, num_queries=8)
    with pytest.raises(ValueError, match="bogus: not an option of this task; known options: vocab_size"):
        task.default_spec(bogus=1)
