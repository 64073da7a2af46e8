"""The NAS-Bench-201 cell builder against the published tables, and the published-tables benchmark on a small slice.

Needs `shared/data/nas-benchmarks` next to the checkout (or `$ARCHLAB_NASBENCH_DATA`): skipped, saying
so, on a fresh clone without it; a failure under CI, where it is always present.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import published_tables as bench
from evaluators import nb201

DATA = Path(os.environ.get("ARCHLAB_NASBENCH_DATA")
            or Path(__file__).resolve().parents[2] / "shared/data/nas-benchmarks")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Small single-sample forwards: a second thread only adds contention on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tables() -> bench.Tables:
    if not all((DATA / name).is_file() for name in bench.FILES.values()):
        reason = (f"the NAS-Bench tables are not at {DATA}: check out shared/ next to this repository "
                  "or set ARCHLAB_NASBENCH_DATA to the nas-benchmarks directory")
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI clones shared/ next to main, so it must be there)")
        pytest.skip(reason)
    return bench.load_tables(DATA)


def test_arch_strings_round_trip_for_every_cell_and_bad_strings_are_refused(tables):
    assert len(tables.accuracy) == 5 ** 6
    for genome in tables.accuracy:
        assert nb201.from_arch_str(nb201.to_arch_str(genome)) == genome
    # NB201's ResNet-like cell: a 3x3 conv into node 1, another into node 2, a skip from the input to the output
    resnet = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
    genome = nb201.from_arch_str(resnet)
    assert dict(zip(nb201.EDGES, (nb201.OPS[g] for g in genome))) == {
        (1, 2): "nor_conv_3x3", (1, 3): "none", (2, 3): "nor_conv_3x3",
        (1, 4): "skip_connect", (2, 4): "none", (3, 4): "none"}
    with pytest.raises(ValueError, match="nodes of 1, 2 and 3 edges"):
        nb201.from_arch_str("|nor_conv_3x3~0|+|none~0|")
    with pytest.raises(ValueError, match="unknown op"):
        nb201.from_arch_str(resnet.replace("none~0", "conv_5x5~0"))
    with pytest.raises(ValueError, match="op indices"):
        nb201.check_genome((0, 1, 2, 3, 4, 5))


def _depends_on_input(genome) -> bool:
    torch.manual_seed(0)
    model = nb201.build_network(genome).double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    return not torch.equal(out[0], out[1])          # at init the signal is tiny beside the bias: exact test


def test_cell_wiring_follows_the_edge_order():
    conv, skip, none = (nb201.OPS.index(n) for n in ("nor_conv_3x3", "skip_connect", "none"))
    path = [none] * 6
    path[nb201.EDGES.index((1, 2))], path[nb201.EDGES.index((2, 4))] = conv, skip    # input -> node 2 -> output
    broken = [none] * 6
    broken[nb201.EDGES.index((1, 2))], broken[nb201.EDGES.index((3, 4))] = conv, skip  # node 3 receives nothing
    assert _depends_on_input(path)
    assert not _depends_on_input(broken)          # the cells pass only zeros; the output is the classifier's bias


def test_parameter_counts_match_the_table_for_all_491_cells(tables):
    for genome, row in tables.naslib["cifar10"].items():
        with torch.device("meta"):                # shapes only: no initialisation cost
            model = nb201.build_network(genome, "cifar10")
        assert nb201.params_millions(model) == pytest.approx(row["params"], rel=1e-6), nb201.to_arch_str(genome)
    for ds in ("cifar100", "ImageNet16-120"):     # only the classifier differs
        for genome, row in list(tables.naslib[ds].items())[:20]:
            with torch.device("meta"):
                model = nb201.build_network(genome, ds)
            assert nb201.params_millions(model) == pytest.approx(row["params"], rel=1e-6)


def test_flops_match_the_table_within_one_percent_on_a_sample(tables):
    rng = np.random.default_rng(1)
    for ds in bench.DATASETS:
        cells = list(tables.naslib[ds])
        for i in rng.choice(len(cells), 12, replace=False):
            genome = cells[i]
            flops = nb201.flops_millions(nb201.build_network(genome, ds), ds)
            assert flops == pytest.approx(tables.naslib[ds][genome]["flops"], rel=0.01), (ds, nb201.to_arch_str(genome))


def test_flops_multiply_accumulates_are_torch_flop_counters_halved():
    model = nb201.build_network(nb201.from_arch_str(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"), "cifar100")
    macs = nb201.flops_millions(model, "cifar100", elementwise=False)
    assert macs == pytest.approx(nb201.conv_linear_macs(model, "cifar100"), rel=1e-9)
    assert nb201.flops_millions(model, "cifar100") > macs                   # BN, ReLU and pooling come on top


def test_nlp_loader_keeps_the_models_the_published_correlations_were_computed_on(tables):
    finals = [m["val_losses"][-1] for m in tables.nlp]
    for k in bench.NLP_K:
        early = [m["val_losses"][k - 1] for m in tables.nlp]
        assert bench.correlation(early, finals)["kendall"] == pytest.approx(bench.PUBLISHED_NLP[k]["kendall"], abs=0.01)


def test_benchmark_sections_on_a_small_slice(tables):
    naslib, drawn = bench.nb201_cells(tables, sample=2, naslib_cells=6)
    assert len(set(naslib + drawn)) == 8 and not set(drawn) & set(tables.naslib["cifar10"])
    cells = naslib + drawn
    free = dict(zip(cells, bench.map_cells(bench.data_free_scores, cells, workers=1)))
    synthetic = dict(zip(naslib, bench.map_cells(bench.synthetic_scores, naslib, workers=1)))
    a = bench.section_a(tables, naslib, drawn, free, synthetic)
    for ds in bench.DATASETS:
        # our builder's costs against the table's, and our synflow against NASLib's scores of the same cells
        assert a["cost_check"][ds]["params_max_relative_error"] < 1e-6
        assert a["cost_check"][ds]["flops_max_relative_error"] < 0.01
        assert a["data_free"][ds]["synflow"]["agreement_with_naslib_spearman"] > 0.9
    b = bench.section_b(tables, naslib, free, synthetic, ks=(3,), seeds=2)
    c = bench.section_c(tables.nlp[:40])
    json.dumps({"a": a, "b": b, "c": c}, allow_nan=False)       # the result file is plain JSON, no NaN


# --- the statistics, on planted data whose answer is known (no tables needed) -----------------------------------

def _planted_cells(n: int = 120):
    rng = np.random.default_rng(0)
    quality = rng.normal(size=n)
    signals = {f"c{i}": {"informative": -quality[i] + 0.3 * rng.normal(),     # anti-correlated: the sign is learned
                         "noise_a": float(rng.normal()), "noise_b": float(rng.normal())} for i in range(n)}
    return signals, {f"c{i}": float(q) for i, q in enumerate(quality)}


def test_the_cheap_score_learner_finds_the_informative_signal_and_nothing_in_noise():
    signals, quality = _planted_cells()
    found = bench.learner_study(signals, quality, ("informative", "noise_a", "noise_b"), ks=(25,), seeds=4)["25"]
    assert found["signals_chosen_seed0"] == ["informative"]
    assert found["learner_tau"]["mean"] > 0.6 and found["single_picked_on_k_tau"]["mean"] > 0.6
    noise = bench.learner_study(signals, quality, ("noise_a", "noise_b"), ks=(25,), seeds=4)["25"]
    assert abs(noise["learner_tau"]["mean"]) < 0.2


def _curves(finals, late=()) -> list[dict]:
    """NAS-Bench-NLP-like models: loss = final + 2/sqrt(epoch); a model in `late` stays 3 nats worse until epoch 40."""
    return [{"recepie_id": i, "num_params": 1, "val_losses": [f + 2.0 / math.sqrt(e) + (3.0 if i in late and e < 40
                                                                                        else 0.0)
                                                              for e in range(1, bench.NLP_EPOCHS + 1)]}
            for i, f in enumerate(finals)]


def test_successive_halving_finds_the_best_when_early_losses_rank_truly_and_misses_a_late_bloomer():
    finals = [4.0 + 0.01 * i for i in range(40)]                   # model 0 is the best at epoch 50
    plan = bench.plan_halving(40)
    truthful = bench.halving_run(_curves(finals), plan, {"short_loss": -1.0})
    assert truthful["regret"] == 0 and truthful["found_rank"] == 1
    # the halving trained exactly the schedule it planned
    assert truthful["budget_used"] == pytest.approx(plan["epochs_planned"] / (40 * bench.NLP_EPOCHS), abs=1e-4)
    misled = bench.halving_run(_curves(finals, late={0}), plan, {"short_loss": -1.0})
    assert misled["found_rank"] == 2 and misled["regret"] == pytest.approx(0.01)


def test_random_search_regret_matches_its_exact_expectation():
    finals = [4.0 + 0.01 * i for i in np.random.default_rng(3).permutation(40)]
    found = bench.random_search_regret(_curves(finals))
    k, n = found["models_trained_fully"], 40
    assert k == 4
    # the best of k drawn without replacement has rank j with probability C(n - j, k - 1) / C(n, k)
    expected = sum(math.comb(n - j, k - 1) / math.comb(n, k) * 0.01 * (j - 1) for j in range(1, n - k + 2))
    assert found["regret_mean"] == pytest.approx(expected, rel=0.1)
    assert found["p_regret_zero"] == pytest.approx(k / n, abs=0.03)


def test_cli_names_the_fix_when_the_tables_are_missing(tmp_path, capsys):
    assert bench.main(["--data", str(tmp_path), "--quick", "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "nb201_val_accuracy.json" in err and "--data" in err
    assert not (tmp_path / "r.json").exists()
