"""`archlab lm-eval`: an lm candidate answers lm-eval's requests as a direct computation with the model would, and
the command benchmarks it end to end on local task YAMLs (tests/fixtures/lm_eval_tasks), with no Hub download."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import under_ci

try:
    import lm_eval  # noqa: F401
except ModuleNotFoundError:
    if under_ci():
        pytest.fail("lm-eval is not installed and under CI this test may not skip: pip install -e .[lmeval]",
                    pytrace=False)
    pytest.skip("lm-eval is not installed: pip install -e .[lmeval]", allow_module_level=True)

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # noqa: E402

from archlab.lmeval import AdapterError, ArchlabLM, ByteCodec, codec_for, evaluate, run_cli  # noqa: E402
from evaluators import fidelities  # noqa: E402
from evaluators.baselines import lm_baselines  # noqa: E402
from evaluators.tasks import get_task  # noqa: E402
from wire.task import TaskSpec  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lm_eval_tasks"
MC, GEN = "archlab_fixture_mc", "archlab_fixture_gen"


class Successor(torch.nn.Module):
    """A causal model by construction (each position sees its own token only): after a lowercase letter, the next
    letter of the alphabet is by far the likeliest byte."""

    def __init__(self):
        super().__init__()
        table = torch.zeros(256, 256)
        for c in range(ord("a"), ord("z")):
            table[c, c + 1] = 8.0
        self.table = torch.nn.Parameter(table)

    def forward(self, ids):                      # [B, T] -> [B, T, 256]
        return self.table[ids]


@pytest.fixture(scope="module")
def candidate_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("candidate") / "lm_transformer.py"
    path.write_text(lm_baselines()["lm_transformer"][1])
    return path


@pytest.fixture(scope="module")
def transformer(candidate_file):
    """The shipped transformer baseline at rung 0's short instance (untrained: its log-probabilities still differ
    from token to token, which is all these comparisons need)."""
    task = get_task("lm")
    instance = task.spec(task.options(scale=0)).at("short")
    model = fidelities.build(fidelities.load_candidate(candidate_file, entry=task.entry), instance, 0, task.entry)
    return model.eval(), instance.seq_len


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Hub: datasets offline, its cache in tmp_path, and the working directory the fixtures' (their data_files
    are relative paths, which datasets resolves against it)."""
    import datasets.config
    import huggingface_hub.constants
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)        # read at import: set them as imported too
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    monkeypatch.chdir(FIXTURES)


def requests(kind: str, *args: tuple) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=0) for a in args]


def direct_logprob(model: torch.nn.Module, tokens: list[int], scored: int) -> tuple[float, bool]:
    """log p(tokens[-scored:] | what comes before) from one unpadded forward pass, and whether each is the argmax."""
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([tokens[:-1]])).float(), dim=-1)[0, -scored:]
    targets = torch.tensor(tokens[-scored:])
    return logprobs.gather(-1, targets[:, None]).sum().item(), bool((logprobs.argmax(-1) == targets).all())


def test_loglikelihood_is_the_models_log_probability_of_the_continuation(transformer):
    model, seq_len = transformer
    long_context = "the quick brown fox jumps over the lazy dog, " * 4          # 180 bytes: cut from the left
    pairs = [("The cat sat on the", " mat"), ("", "hello"), ("Birds can", " fly south in winter"),
             (long_context, " again"), ("x", " y")]
    lm = ArchlabLM(model, ByteCodec(), seq_len, batch_size=2)                   # batches of unequal rows: padding
    found = lm.loglikelihood(requests("loglikelihood", *pairs))
    for (context, continuation), (logprob, _) in zip(pairs, found):
        kept = context.rstrip()             # as lm-eval's HF model: a context's trailing spaces are scored, with the
        ctx = list(kept.encode()) or [ord("\n")]            # continuation; an empty context is a line break
        cont = list((context[len(kept):] + continuation).encode())
        expected, _ = direct_logprob(model, (ctx + cont)[-(seq_len + 1):], len(cont))
        assert logprob == pytest.approx(expected, abs=1e-4), (context, continuation)
    assert len({round(lp, 3) for lp, _ in found}) == len(pairs)                # five different answers, not one


def test_is_greedy_says_whether_greedy_decoding_produces_the_continuation():
    lm = ArchlabLM(Successor(), ByteCodec(), seq_len=4)
    (greedy, is_greedy), (other, is_other_greedy) = lm.loglikelihood(requests("loglikelihood", ("abc", "defgh"),
                                                                              ("abc", "defgx")))
    assert is_greedy and not is_other_greedy
    assert greedy > other


def test_a_prepared_bpe_tokenizer_is_loaded_and_the_whole_text_is_scored_as_it_tokenises(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    bpe = Tokenizer(models.BPE())                          # as `archlab prepare-data --tokenizer bpe:VOCAB` writes
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["the cat sat on the mat; the dog sat on the log"] * 20, trainer=trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|endoftext|>"],
        show_progress=False))
    bpe.save(str(tmp_path / "tokenizer.json"))
    spec = TaskSpec(name="lm", family="sequence", data={"data": str(tmp_path), "tokenizer": "bpe:300"})
    codec = codec_for(spec)
    assert codec.prefix_token == codec.stop_token == bpe.token_to_id("<|endoftext|>")
    torch.manual_seed(0)
    model = torch.nn.Embedding(codec.vocab_size, codec.vocab_size)         # a bigram model: causal by construction
    [(logprob, _)] = ArchlabLM(model, codec, seq_len=16).loglikelihood(requests("loglikelihood", ("the cat", " sat")))
    whole, context = codec.encode("the cat sat"), codec.encode("the cat")
    assert logprob == pytest.approx(direct_logprob(model, whole, len(whole) - len(context))[0], abs=1e-4)

    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(AdapterError, match="tokenizer.json is missing"):
        codec_for(spec)


def test_rolling_loglikelihood_scores_every_token_once_in_lm_evals_windows(transformer):
    model, seq_len = transformer
    text = "Ice is made of frozen water, and the sun rises in the east. " * 3      # 183 bytes: three windows
    tokens = list(text.encode())
    expected = 0.0
    for window in get_rolling_token_windows(tokens, prefix_token=ord("\n"), max_seq_len=seq_len, context_len=1):
        context, predicted = make_disjoint_window(window)
        expected += direct_logprob(model, context + predicted, len(predicted))[0]
    [found] = ArchlabLM(model, ByteCodec(), seq_len, batch_size=2).loglikelihood_rolling(
        requests("loglikelihood_rolling", (text,)))
    assert found == pytest.approx(expected, abs=1e-3)


def test_generation_is_greedy_and_stops_at_until_or_max_gen_toks():
    lm = ArchlabLM(Successor(), ByteCodec(), seq_len=4, batch_size=2)     # contexts outgrow seq_len while generating
    found = lm.generate_until(requests("generate_until", ("abc", {"until": ["g"], "max_gen_toks": 20}),
                                       ("klmno", {"until": ["\n"], "max_gen_toks": 3}),
                                       ("uvw", {"until": ["yz"]})))
    assert found == ["def", "pqr", "x"]


def test_generation_in_a_batch_equals_generation_alone(transformer):
    model, seq_len = transformer
    asks = requests("generate_until", ("Opposite of up:", {"until": [], "max_gen_toks": 8}),
                    ("A much longer prompt than the first one, to pad the other row:", {"max_gen_toks": 8}))
    batched = ArchlabLM(model, ByteCodec(), seq_len, batch_size=2).generate_until(asks)
    alone = ArchlabLM(model, ByteCodec(), seq_len, batch_size=1).generate_until(asks)
    assert batched == alone and all(len(text) > 0 for text in batched)


def test_multiple_choice_accuracy_is_the_hand_computed_one(transformer, offline):
    model, seq_len = transformer
    results = evaluate(ArchlabLM(model, ByteCodec(), seq_len, batch_size=4), [MC], include_path=FIXTURES,
                       include_defaults=False)
    docs = [json.loads(line) for line in (FIXTURES / "mc.jsonl").read_text().splitlines()]
    right = 0
    for doc in docs:
        context = list(doc["context"].encode())
        scores = [direct_logprob(model, context + list((" " + c).encode()), len((" " + c).encode()))[0]
                  for c in doc["choices"]]
        right += max(range(len(scores)), key=scores.__getitem__) == doc["label"]
    assert results["results"][MC]["acc,none"] == pytest.approx(right / len(docs))
    assert results["n-samples"][MC]["effective"] == len(docs)


def test_the_command_trains_saves_and_reloads_a_candidate_and_writes_results(candidate_file, offline, tmp_path,
                                                                             capsys):
    weights, first, second = tmp_path / "w.pt", tmp_path / "trained.json", tmp_path / "reloaded.json"
    common = ["--candidate", str(candidate_file), "--tasks", f"{MC},{GEN}", "--include-path", str(FIXTURES),
              "--no-default-tasks", "--device", "cpu"]
    assert run_cli([*common, "--train", "short", "--steps", "3", "--save-weights", str(weights), "--log-samples",
                    "--out", str(first)]) == 0
    table = capsys.readouterr().out
    assert MC in table and GEN in table and "exact_match" in table
    trained = json.loads(first.read_text())
    assert trained["config"]["archlab"]["trained"]["steps"] == 3
    assert set(trained["results"]) == {MC, GEN}
    assert trained["n-samples"][GEN]["effective"] == 4
    assert sorted(item["doc_id"] for item in trained["samples"][MC]) == list(range(8))     # item by item

    assert run_cli([*common, "--weights", str(weights), "--out", str(second)]) == 0
    reloaded = json.loads(second.read_text())
    for task, metric in ((MC, "acc,none"), (GEN, "exact_match,none")):
        assert reloaded["results"][task][metric] == trained["results"][task][metric]

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    by_name = simple_evaluate(model="archlab", model_args=f"candidate={candidate_file},weights={weights}",
                              tasks=[MC], task_manager=TaskManager(include_path=str(FIXTURES), include_defaults=False),
                              device="cpu", log_samples=False)
    assert by_name["results"][MC]["acc,none"] == trained["results"][MC]["acc,none"]


def test_the_command_refuses_weights_of_another_rung_and_says_why(candidate_file, tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(Successor().state_dict(), weights)
    code = run_cli(["--candidate", str(candidate_file), "--weights", str(weights), "--tasks", MC,
                    "--include-path", str(FIXTURES), "--no-default-tasks", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "does not fit the model built at --fidelity short --scale 0" in err and "next:" in err
