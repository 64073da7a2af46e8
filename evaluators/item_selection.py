"""Efficient benchmarking: which downstream items to keep, how to estimate the full-suite score from
them, and how far the decisions taken on them can be trusted.

Owns the statistics of issue 23, on plain arrays:
- `Y` [models, items] in [0, 1]: a model's expected accuracy on an item (the probability it puts on the
  right choice); `C` [models, items] in {0, 1}: its top choice is right (what IRT models);
  `scenarios` [items]: the scenario label of each item.
- `full_score(Y, scenarios)`: the suite's score, the macro average (each scenario weighs the same).
- `AnchorSet`: the chosen items and their weights, frozen and JSON-round-tripping (`to_dict` /
  `from_dict`) so the loop can record it in an event and replay it. `estimate` / `estimate_many` turn a
  model's scores on the anchor items into an estimate of its full-suite score:
  sum_s 1/S * sum_{i in anchors of s} w_i * y_i, with the weights summing to 1 within each scenario
  (each scenario's term mapped through its calibration when the set carries one).
- Selection methods, each `(Y_sources, C_sources, scenarios, n, seed) -> AnchorSet` with about n items
  (n split evenly over the scenarios, at least one each), found by name through `select`:
  - `uniform`: n items drawn at random, stratified by scenario, equal weights. The baseline every other
    method must beat, and the policy while too few source models exist (it reads no scores).
  - `anchor_points` (Vivek et al. 2023): per scenario, k-means on the items' score vectors across the
    source models in correlation geometry (centred, unit length: items that order the models alike
    cluster together); each cluster's anchor is its member nearest the centroid, weighted by the
    cluster's share of the scenario.
  - `irt` (tinyBenchmarks, Polo et al. 2024): a unidimensional 2PL fitted on `C_sources` with the `mirt`
    package (EM, marginal maximum likelihood); items clustered by (discrimination, difficulty) and
    weighted as above; from each cluster its most informative item. Why `mirt`: it needs only numpy and
    scipy (its EM core is a bundled Rust extension) and fits a 40 x 4000 matrix in ~0.5 s on one CPU
    core; `py-irt` pulls pyro and a CUDA build of torch (it would replace the CPU torch), and `girth` has
    had no release since 2021. Multidimensional fits (`n_factors` 2) take ~25 s on the same matrix, too
    slow to re-fit per fold.
  Both anchor methods calibrate each scenario's estimate on the source models (an affine map, see
  `AnchorSet`): anchors chosen to separate models exaggerate their differences, and correlation
  ignores an item's level; on 2PL pools the calibration cut the error several times and let the
  correlation anchors rank better than uniform subsets of the same size.
- Agreement and reliability: `kendall_tau`; `cross_validated` (each model estimated from anchors fitted
  on the other folds' models only); `reliability` (DIoR-style, after Perlitz et al. 2023: the subset
  re-drawn over bootstraps of the source models and seeds; how often pairwise decisions and the top-k
  stand) returning a `Reliability` record; `bootstrap_estimates` and `decision_reliability` for a
  decision between two candidates scored on one anchor set (what the loop calls per pair).

Does not: run models, build the suite or its items (`evaluators/suite.py`), decide when to re-fit or
record events (the loop), or implement the gp-IRT estimator: IRT predicts whether a model's top choice is
right (`C`), while the suite scores expected accuracy (`Y`), so its prediction of unseen items would
estimate another quantity. Host side only; numpy, scipy and `mirt` (imported when `irt` is used).
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

KMEANS_ITERATIONS = 50  # Lloyd iterations; a few hundred items per scenario settle in far fewer
IRT_MAX_ITER = 100      # EM iterations of the 2PL fit: items every source gets right (or wrong) drift for
                        # hundreds more without moving the others (rank correlation 0.999 with 500)
WEIGHT_TOLERANCE = 1e-6
ABILITY_GRID = 9        # abilities at which an item's information is averaged (normal quantiles)


# ---- the record and the estimate ---------------------------------------------------------------

@dataclass(frozen=True)
class AnchorSet:
    """The anchor items of a suite, with one weight and one scenario label per item, and optionally a
    calibration of each scenario's estimate fitted on the source models.

    Weights sum to 1 within each scenario; every scenario of the suite has at least one anchor, so the
    number of scenarios S is the number of distinct labels here. `offsets` / `scales` (one per scenario,
    in sorted label order; empty = none) map a scenario's weighted anchor score x to offset + scale * x.
    Why: anchors chosen for how well they separate models are more discriminating than the average
    item, so their raw mean exaggerates differences and misses the level; an affine map fitted on the
    source models (least squares of the scenario's full mean on x) puts the estimate back on the full
    suite's scale, and keeps each scenario's order of models (scale >= 0).
    """
    method: str
    items: tuple[int, ...]
    weights: tuple[float, ...]
    scenarios: tuple[int, ...]
    offsets: tuple[float, ...] = ()
    scales: tuple[float, ...] = ()

    def __post_init__(self):
        # plain Python numbers, so the record serialises as JSON whatever arrays it was built from
        for name, kind in (("items", int), ("weights", float), ("scenarios", int), ("offsets", float),
                           ("scales", float)):
            object.__setattr__(self, name, tuple(kind(value) for value in getattr(self, name)))
        if not len(self.items) == len(self.weights) == len(self.scenarios) or not self.items:
            raise ValueError("an anchor set needs one weight and one scenario per item, and at least one item")
        if len(set(self.items)) != len(self.items):
            raise ValueError("anchor items repeat; each item may be an anchor once")
        for label, total in self._weight_sums().items():
            if abs(total - 1.0) > WEIGHT_TOLERANCE:
                raise ValueError(f"weights of scenario {label} sum to {total}, not 1")
        if len(self.offsets) != len(self.scales) or len(self.offsets) not in (0, self.n_scenarios):
            raise ValueError("a calibration needs one offset and one scale per scenario, or none")

    def _weight_sums(self) -> dict[int, float]:
        sums: dict[int, float] = {}
        for label, weight in zip(self.scenarios, self.weights):
            sums[label] = sums.get(label, 0.0) + weight
        return sums

    @property
    def labels(self) -> tuple[int, ...]:
        """The scenario labels, sorted: the order of `offsets` and `scales`."""
        return tuple(sorted(set(self.scenarios)))

    @property
    def n_scenarios(self) -> int:
        return len(set(self.scenarios))

    def to_dict(self) -> dict:
        return {"method": self.method, "items": list(self.items), "weights": list(self.weights),
                "scenarios": list(self.scenarios), "offsets": list(self.offsets), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, data: dict) -> AnchorSet:
        return cls(method=data["method"], items=tuple(data["items"]), weights=tuple(data["weights"]),
                   scenarios=tuple(data["scenarios"]), offsets=tuple(data.get("offsets", ())),
                   scales=tuple(data.get("scales", ())))


def full_score(Y, scenarios) -> np.ndarray:
    """Full-suite score per model [models]: the mean over scenarios of the mean item score within each."""
    Y, scenarios = np.atleast_2d(np.asarray(Y, dtype=np.float64)), np.asarray(scenarios)
    return np.mean([Y[:, scenarios == label].mean(axis=1) for label in np.unique(scenarios)], axis=0)


def estimate(anchor_set: AnchorSet, scores_on_anchor_items) -> float:
    """One model's estimated full-suite score from its scores on the anchor items (in `items` order)."""
    return float(estimate_many(anchor_set, np.asarray(scores_on_anchor_items)[None, :])[0])


def estimate_many(anchor_set: AnchorSet, scores_on_anchor_items) -> np.ndarray:
    """Estimates for many models: `scores_on_anchor_items` is [models, anchors] -> [models]."""
    scores = np.atleast_2d(np.asarray(scores_on_anchor_items, dtype=np.float64))
    if scores.shape[-1] != len(anchor_set.items):
        raise ValueError(f"got scores on {scores.shape[-1]} items for {len(anchor_set.items)} anchors")
    return scenario_estimates(anchor_set, scores).mean(axis=1)


def scenario_estimates(anchor_set: AnchorSet, scores: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Each scenario's estimated mean score [models, scenarios] (sorted labels), calibrated when the set
    carries a calibration. `weights` replaces the set's (a resampled draw's)."""
    weights = np.asarray(anchor_set.weights if weights is None else weights)
    labels = np.asarray(anchor_set.scenarios)
    raw = np.stack([scores[:, labels == label] @ weights[labels == label] for label in anchor_set.labels], axis=1)
    if not anchor_set.offsets:
        return raw
    return np.asarray(anchor_set.offsets) + np.asarray(anchor_set.scales) * raw


def calibrate(anchor_set: AnchorSet, Y_sources, scenarios) -> AnchorSet:
    """The set with each scenario's affine calibration fitted on the source models (see `AnchorSet`);
    fewer than three sources, or anchors that do not vary across them, leave a scenario uncalibrated."""
    Y, scenarios = np.asarray(Y_sources, dtype=np.float64), np.asarray(scenarios)
    raw = scenario_estimates(replace(anchor_set, offsets=(), scales=()), Y[:, list(anchor_set.items)])
    fits = [_affine_fit(raw[:, column], Y[:, scenarios == label].mean(axis=1))
            for column, label in enumerate(anchor_set.labels)]
    return replace(anchor_set, offsets=tuple(offset for offset, _ in fits), scales=tuple(scale for _, scale in fits))


def _affine_fit(x: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(offset, scale) of the least-squares line target ~ offset + scale * x, the scale kept >= 0 so a
    scenario's order of models is never reversed; the identity where x cannot support a fit."""
    if len(x) < 3 or x.var() == 0:
        return 0.0, 1.0
    scale = max(float(np.cov(x, target)[0, 1] / x.var(ddof=1)), 0.0)
    return float(target.mean() - scale * x.mean()), scale


# ---- selection methods -----------------------------------------------------------------------

def scenario_quota(scenarios, n: int) -> dict[int, int]:
    """Anchors per scenario: n split evenly (the remainder to the first scenarios), at least one each,
    at most the scenario's size."""
    labels, sizes = np.unique(np.asarray(scenarios), return_counts=True)
    base, extra = divmod(int(n), len(labels))
    return {int(label): int(min(size, max(1, base + (rank < extra))))
            for rank, (label, size) in enumerate(zip(labels, sizes))}


def _scenario_items(scenarios) -> dict[int, np.ndarray]:
    scenarios = np.asarray(scenarios)
    return {int(label): np.flatnonzero(scenarios == label) for label in np.unique(scenarios)}


def select_uniform(Y_sources, C_sources, scenarios, n: int, seed: int) -> AnchorSet:
    """n items at random, stratified by scenario, equal weights within a scenario; reads no scores."""
    rng = np.random.default_rng(seed)
    quota = scenario_quota(scenarios, n)
    items, weights, labels = [], [], []
    for label, members in _scenario_items(scenarios).items():
        chosen = np.sort(rng.choice(members, size=quota[label], replace=False))
        items += chosen.tolist()
        weights += [1.0 / len(chosen)] * len(chosen)
        labels += [label] * len(chosen)
    return AnchorSet("uniform", tuple(items), tuple(weights), tuple(labels))


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Cluster label per point: k-means++ seeding, then Lloyd iterations; deterministic given `rng`.

    Needs at least k points; every one of the k clusters comes back non-empty, even where points repeat
    (items every source model gets right share one embedding)."""
    points = np.asarray(points, dtype=np.float64)
    centroids = _kmeanspp(points, k, rng)
    labels = np.full(len(points), -1)
    for _ in range(KMEANS_ITERATIONS):
        distances = _squared_distances(points, centroids)
        new_labels = _fill_empty_clusters(distances.argmin(axis=1), distances, k)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        members = np.zeros((k, len(points)))
        members[labels, np.arange(len(points))] = 1.0
        centroids = members @ points / members.sum(axis=1, keepdims=True)
    return labels


def _fill_empty_clusters(labels: np.ndarray, distances: np.ndarray, k: int) -> np.ndarray:
    """Give each empty cluster the point farthest from its centroid among clusters with points to spare."""
    labels = labels.copy()
    counts = np.bincount(labels, minlength=k)
    cost = distances[np.arange(len(labels)), labels]
    for empty in np.flatnonzero(counts == 0):
        spare = np.flatnonzero(counts[labels] > 1)
        moved = spare[cost[spare].argmax()]
        counts[labels[moved]] -= 1
        labels[moved], counts[empty], cost[moved] = empty, 1, -1.0
    return labels


def _kmeanspp(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centroids = [points[rng.integers(len(points))]]
    closest = _squared_distances(points, centroids[0][None]).ravel()
    for _ in range(1, k):
        # identical points leave nothing to spread over; then any point will do
        p = closest / closest.sum() if closest.sum() > 0 else None
        centroids.append(points[rng.choice(len(points), p=p)])
        closest = np.minimum(closest, _squared_distances(points, centroids[-1][None]).ravel())
    return np.stack(centroids)


def _squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    squared = (points ** 2).sum(1)[:, None] - 2 * points @ centroids.T + (centroids ** 2).sum(1)[None]
    return np.maximum(squared, 0.0)


def cluster_anchors(method: str, embedding: np.ndarray, scenarios, n: int, seed: int,
                    preference: np.ndarray | None = None) -> AnchorSet:
    """Per scenario: k-means on the items' embeddings [items, dims]; each cluster's anchor is its member
    nearest the centroid (or, given `preference` [items], its most preferred member), weighted by the
    cluster's share of the scenario's items."""
    rng = np.random.default_rng(seed)
    quota = scenario_quota(scenarios, n)
    items, weights, labels = [], [], []
    for label, members in _scenario_items(scenarios).items():
        points = embedding[members]
        clusters = kmeans(points, quota[label], rng)
        for cluster in range(quota[label]):
            inside = np.flatnonzero(clusters == cluster)
            if preference is None:
                centre = points[inside].mean(axis=0)
                chosen = inside[_squared_distances(points[inside], centre[None]).ravel().argmin()]
            else:
                chosen = inside[preference[members[inside]].argmax()]
            items.append(int(members[chosen]))
            weights.append(len(inside) / len(members))
            labels.append(label)
    return AnchorSet(method, tuple(items), tuple(weights), tuple(labels))


def correlation_embedding(Y_sources) -> np.ndarray:
    """Items [items, models] centred and scaled to unit length: squared euclidean distance between two
    rows is 2 * (1 - their correlation across the source models)."""
    vectors = np.asarray(Y_sources, dtype=np.float64).T
    centred = vectors - vectors.mean(axis=1, keepdims=True)
    return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)


def select_anchor_points(Y_sources, C_sources, scenarios, n: int, seed: int) -> AnchorSet:
    """Anchor Points: items clustered by the correlation of their scores across the source models (items
    that order the models alike), each cluster's most typical item kept; calibrated on the sources."""
    anchors = cluster_anchors("anchor_points", correlation_embedding(Y_sources), scenarios, n, seed)
    return calibrate(anchors, Y_sources, scenarios)


@dataclass(frozen=True)
class ItemParameters:
    """A fitted unidimensional 2PL: P(right) = sigmoid(discrimination * (theta - difficulty))."""
    discrimination: np.ndarray  # [items]
    difficulty: np.ndarray      # [items]

    def embedding(self) -> np.ndarray:
        """[items, 2], each column standardised so neither parameter's scale dominates the clustering."""
        columns = np.stack([self.discrimination, self.difficulty], axis=1)
        spread = columns.std(axis=0)
        return (columns - columns.mean(axis=0)) / np.where(spread > 0, spread, 1.0)

    def information(self) -> np.ndarray:
        """Each item's Fisher information about ability, averaged over a standard-normal ability grid:
        how much the item tells models of the pool's abilities apart."""
        theta = stats.norm.ppf((np.arange(ABILITY_GRID) + 0.5) / ABILITY_GRID)
        a = np.clip(self.discrimination, 0.0, None)[:, None]
        p = 1.0 / (1.0 + np.exp(-a * (theta[None, :] - self.difficulty[:, None])))
        return (a ** 2 * p * (1 - p)).mean(axis=1)


def fit_irt(C_sources) -> ItemParameters:
    """2PL fitted by `mirt` (EM) on binary correctness [models, items]; cached by the matrix's content,
    since cross-validation and reliability draws re-fit the same source pools many times."""
    C = np.ascontiguousarray(np.asarray(C_sources, dtype=np.int8))
    key = hashlib.sha256(C.tobytes()).hexdigest() + str(C.shape)
    return _fit_irt_cached(key, C.tobytes(), C.shape)


@functools.lru_cache(maxsize=256)
def _fit_irt_cached(key: str, data: bytes, shape: tuple[int, int]) -> ItemParameters:
    import mirt  # imported here: only the irt method needs it

    C = np.frombuffer(data, dtype=np.int8).reshape(shape).astype(int)
    result = mirt.fit_mirt(C, model="2PL", max_iter=IRT_MAX_ITER, compute_standard_errors=False)
    parameters = result.model.parameters
    return ItemParameters(np.asarray(parameters["discrimination"], dtype=np.float64).ravel(),
                          np.asarray(parameters["difficulty"], dtype=np.float64).ravel())


def select_irt(Y_sources, C_sources, scenarios, n: int, seed: int) -> AnchorSet:
    """IRT anchors: items clustered by their fitted 2PL parameters (as tinyBenchmarks), and from each
    cluster its most informative item rather than the one nearest the centroid (with ~40 source models
    the parameters are noisy, and the centroid's item ranked held-out models worse than uniform subsets
    on 2PL pools); calibrated on the sources."""
    parameters = fit_irt(C_sources)
    anchors = cluster_anchors("irt", parameters.embedding(), scenarios, n, seed, preference=parameters.information())
    return calibrate(anchors, Y_sources, scenarios)


Selector = Callable[..., AnchorSet]
METHODS: dict[str, Selector] = {
    "uniform": select_uniform,
    "anchor_points": select_anchor_points,
    "irt": select_irt,
}


def select(method: str, Y_sources, C_sources, scenarios, n: int, seed: int = 0) -> AnchorSet:
    """The anchor set `method` chooses from the source models' results; n >= the suite's size keeps
    every item with equal weights (the full suite itself)."""
    if method not in METHODS:
        raise ValueError(f"unknown item-selection method {method!r}; choose one of {', '.join(METHODS)}")
    if n >= len(scenarios):
        return AnchorSet(method, *_all_items(scenarios))
    return METHODS[method](Y_sources, C_sources, scenarios, n, seed)


def _all_items(scenarios) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    scenarios = np.asarray(scenarios)
    sizes = {label: int((scenarios == label).sum()) for label in np.unique(scenarios)}
    return (tuple(range(len(scenarios))), tuple(1.0 / sizes[label] for label in scenarios),
            tuple(int(label) for label in scenarios))


# ---- agreement and reliability ----------------------------------------------------------------

def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two score vectors over the same models."""
    return float(stats.kendalltau(a, b).statistic)


def cross_validated(method: str, Y, C, scenarios, n: int, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Each model's estimated full-suite score [models] from anchors chosen on the other folds' models:
    the model being scored never helps choose its own items."""
    Y, C = np.asarray(Y), np.asarray(C)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(np.arange(len(Y)) % folds)
    estimates = np.empty(len(Y))
    for fold in range(folds):
        held_out = fold_of == fold
        anchors = select(method, Y[~held_out], C[~held_out], scenarios, n, seed)
        estimates[held_out] = estimate_many(anchors, Y[held_out][:, list(anchors.items)])
    return estimates


@dataclass(frozen=True)
class Reliability:
    """How the decisions taken on a method's subsets of size n stand when the subset is chosen again.

    `pairwise_agreement`: over draws and over pairs of source models with different full-suite scores,
    the share whose order on the subset's estimates matches the full suite's. `top_k_agreement`: share
    of draws whose top-k set is the full suite's top-k. `standard_error`: per model, the spread (std)
    of its estimate over draws; `mean_standard_error` its mean over models.
    """
    method: str
    n: int
    draws: int
    k: int
    pairwise_agreement: float
    top_k_agreement: float
    mean_standard_error: float
    standard_error: tuple[float, ...]

    def to_dict(self) -> dict:
        return {field: (list(value) if isinstance(value, tuple) else value)
                for field, value in self.__dict__.items()}


def reliability(method: str, Y_sources, C_sources, scenarios, n: int, draws: int = 20, seed: int = 0,
                k: int = 5) -> Reliability:
    """DIoR-style reliability: the subset re-drawn `draws` times, each from a bootstrap sample of the
    source models and its own seed; every source model estimated from each draw's anchors."""
    Y, C = np.asarray(Y_sources, dtype=np.float64), np.asarray(C_sources)
    truth = full_score(Y, scenarios)
    rng = np.random.default_rng(seed)
    over_draws = np.empty((draws, len(Y)))
    for draw in range(draws):
        sample = rng.choice(len(Y), size=len(Y), replace=True)
        anchors = select(method, Y[sample], C[sample], scenarios, n, seed + draw)
        over_draws[draw] = estimate_many(anchors, Y[:, list(anchors.items)])
    spread = over_draws.std(axis=0)
    return Reliability(method=method, n=int(n), draws=int(draws), k=int(min(k, len(Y))),
                       pairwise_agreement=_pairwise_agreement(over_draws, truth),
                       top_k_agreement=_top_k_agreement(over_draws, truth, min(k, len(Y))),
                       mean_standard_error=float(spread.mean()), standard_error=tuple(spread.tolist()))


def _pairwise_agreement(over_draws: np.ndarray, truth: np.ndarray) -> float:
    true_order = np.sign(truth[:, None] - truth[None, :])
    decided = true_order != 0  # tied models have no decision to keep
    if not decided.any():
        return 1.0
    orders = np.sign(over_draws[:, :, None] - over_draws[:, None, :])
    return float((orders == true_order)[:, decided].mean())


def _top_k_agreement(over_draws: np.ndarray, truth: np.ndarray, k: int) -> float:
    true_top = set(np.argsort(-truth, kind="stable")[:k].tolist())
    return float(np.mean([set(np.argsort(-row, kind="stable")[:k].tolist()) == true_top for row in over_draws]))


def bootstrap_estimates(anchor_set: AnchorSet, scores_on_anchor_items, draws: int = 200,
                        seed: int = 0) -> np.ndarray:
    """Estimates [draws, models] under other choices of the subset, from one anchor set's scores: each
    draw resamples the anchors within each scenario (with replacement, weights renormalised).

    Models scored with the same `seed` see the same resampled items, so their draws are paired, which is
    what `decision_reliability` needs."""
    scores = np.atleast_2d(np.asarray(scores_on_anchor_items, dtype=np.float64))
    labels, weights = np.asarray(anchor_set.scenarios), np.asarray(anchor_set.weights)
    groups = [np.flatnonzero(labels == label) for label in anchor_set.labels]
    rng = np.random.default_rng(seed)
    out = np.empty((draws, len(scores)))
    for draw in range(draws):
        resampled = np.zeros(len(weights))
        for group in groups:
            times_picked = np.bincount(rng.choice(len(group), size=len(group)), minlength=len(group))
            resampled[group] = weights[group] * times_picked / (weights[group] * times_picked).sum()
        out[draw] = scenario_estimates(anchor_set, scores, resampled).mean(axis=1)
    return out


def decision_reliability(estimates_over_draws_a, estimates_over_draws_b, point_decision: bool | None = None) -> float:
    """Share of draws agreeing with the decision "a is better than b": with `point_decision` given (the
    decision taken on the anchor estimate), agreement with it; otherwise with the draws' majority.
    Ties count half. A low value means the decision should go to the full suite."""
    a, b = np.asarray(estimates_over_draws_a, dtype=np.float64), np.asarray(estimates_over_draws_b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("decision_reliability needs paired draws of the same, non-zero length")
    a_wins = float(np.mean(a > b) + 0.5 * np.mean(a == b))
    if point_decision is None:
        return max(a_wins, 1.0 - a_wins)
    return a_wins if point_decision else 1.0 - a_wins
