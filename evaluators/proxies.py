"""The `proxy` fidelity: cost measures and zero-cost quality proxies of an untrained model, in seconds on CPU.

Runs inside the sandbox, next to the candidate (`sandbox.runner`, fidelity `proxy`), after
`check` has held the model to the contract. `compute_proxies` returns only finite floats:

| metric             | what                                                                  |
| ------------------ | --------------------------------------------------------------------- |
| `params`           | trainable parameters                                                  |
| `flops`            | forward FLOPs for one sample (`torch.utils.flop_counter`)             |
| `activation_bytes` | bytes autograd keeps from one sample's forward for the backward       |
| `synflow`          | natural log of the SynFlow score (Tanaka et al., 2020)                |
| `grad_norm`        | sum of per-tensor gradient norms at init (Abdelfattah et al., 2021)   |
| `snip`             | connection sensitivity at init (Lee et al., 2019)                     |
| `naswot`           | log-det of the activation-pattern kernel (Mellor et al., 2021)        |
| `wpca`             | principal components of FFN activations (after Wang et al., 2025)     |
| `erf`              | long-range reach of the input gradient (sequence models; Luo et al.)  |
| `proxy_seconds`    | wall time of all of the above                                         |

Outside `compute_proxies`, for benchmarks that score plain modules with no task contract
(`benchmarks/published_tables.py`): `loss_gradient_proxies` (grad_norm and snip under any
loss) and `jacob_cov` (Mellor et al.'s Jacobian-covariance score, which needs real inputs).

What these are not: quality measurements. They are cheap signals whose rank correlation with
trained quality varies by task and search space; `evaluators.promotion` weighs them by how
well each has ranked the candidates that were trained to the end, and
`benchmarks/proxy_validation.py` measures that correlation. A proxy that comes out NaN or
inf (a model whose gradients at initialisation are not finite) raises `Diverged`, which the
runner reports as status `error`.
"""
from __future__ import annotations

import math
import time
from typing import Callable, TYPE_CHECKING

import torch

from evaluators.contracts import count_flops
from evaluators.fidelities import Diverged, count_params
from wire.task import TaskSpec

if TYPE_CHECKING:
    from evaluators.tasks.base import Task

PROXY_BATCH = 16          # samples in the batch the gradient and activation proxies see
PROXY_DATA_SEED = 12_345  # fixed, so every candidate sees the same batch
PCA_VARIANCE = 0.99       # W-PCA: share of the variance the counted components must explain
PCA_MAX_ROWS = 1024       # tokens per layer fed to the PCA (enough for hidden widths up to ~1k)
FFN_NAMES = ("ffn", "mlp", "feedforward", "feed_forward")


def compute_proxies(task: Task, spec: TaskSpec, build: Callable[[], torch.nn.Module],
                    device: torch.device, timings: dict[str, float] | None = None) -> dict[str, float]:
    """Every proxy for the model `build()` returns (called once per proxy: each gets a fresh, identical model).

    `timings`, when given, receives the seconds each proxy took (the cost analysis of
    `benchmarks/proxy_validation.py` uses it); `grad_norm` and `snip` share one backward pass.
    """
    started = time.perf_counter()
    timings = {} if timings is None else timings
    x, y = task.train_batch(spec, torch.Generator().manual_seed(PROXY_DATA_SEED), PROXY_BATCH)
    x, y = x.to(device), y.to(device)
    metrics: dict[str, float] = {}

    def timed(names: tuple[str, ...], fn):
        t0 = time.perf_counter()
        value = fn()
        values = value if isinstance(value, dict) else {names[0]: value}
        metrics.update(values)
        for name in names:
            timings[name] = time.perf_counter() - t0

    model = build().to(device)
    timings["build"] = time.perf_counter() - started
    timed(("params",), lambda: float(count_params(model)))
    timed(("flops",), lambda: count_flops(model.eval(), x[:1]))
    timed(("activation_bytes",), lambda: activation_bytes(model.train(), x[:1]))
    timed(("grad_norm", "snip"), lambda: gradient_proxies(task, model, x, y))
    timed(("naswot",), lambda: naswot(build().to(device), x))
    timed(("wpca",), lambda: wpca(build().to(device), x))
    timed(("synflow",), lambda: synflow(build().to(device), x[:1], token_input=task.token_input))
    if task.token_input:      # a receptive field over positions: token models only
        timed(("erf",), lambda: effective_receptive_field(build().to(device), x))
    metrics["proxy_seconds"] = time.perf_counter() - started
    bad = [name for name, value in metrics.items() if not math.isfinite(value)]
    if bad:
        raise Diverged(f"proxies {', '.join(bad)} are NaN or inf: the model's outputs or gradients at "
                       "initialisation are not finite; check normalisation, divisions and the init scale")
    return metrics


def activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Bytes of the tensors autograd saves during `model(x)` for the backward pass, parameters excluded.

    This is the activation memory of training (what grows with batch and sequence length), seen
    through `torch.autograd.graph.saved_tensors_hooks`, so functional ops (`F.gelu`,
    `scaled_dot_product_attention`) count too. Tensors sharing storage are counted once.
    """
    params = {p.data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return float(total)


def gradient_proxies(task: Task, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """`grad_norm` and `snip` from one backward pass of the training loss at initialisation.

    grad_norm = sum_l ||dL/dtheta_l||_2, summed over parameter tensors l, as in "Zero-Cost
      Proxies for Lightweight NAS" (Abdelfattah et al., ICLR 2021).
    snip = sum_i |theta_i * dL/dtheta_i|, the connection sensitivity of "SNIP: Single-shot
      Network Pruning based on Connection Sensitivity" (Lee et al., ICLR 2019), summed over
      all weights as Abdelfattah et al. use it for NAS.
    """
    return loss_gradient_proxies(model, x, y, task.loss)


def loss_gradient_proxies(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                          loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, float]:
    """`gradient_proxies` for any module and loss (`loss(model(x), y)`), without a task contract."""
    model.train().zero_grad(set_to_none=True)
    loss(model(x), y).backward()
    grad_norm = snip = 0.0
    for p in model.parameters():
        if p.grad is not None:
            grad_norm += p.grad.double().norm().item()
            snip += (p.detach().double() * p.grad.double()).abs().sum().item()
    model.zero_grad(set_to_none=True)
    return {"grad_norm": grad_norm, "snip": snip}


def synflow(model: torch.nn.Module, x: torch.Tensor, token_input: bool) -> float:
    """log SynFlow: log sum_i |theta_i * dR/dtheta_i| with R = sum(f_|theta|(input)).

    From "Pruning neural networks without any data by iteratively conserving synaptic flow"
    (Tanaka et al., NeurIPS 2020), used as a NAS proxy by Abdelfattah et al. (ICLR 2021):
    every parameter is replaced by its absolute value, the input is all ones, and R is the sum
    of the outputs. Computed stably: in float64 (eval mode, so dropout and batch statistics
    stay fixed), with the final sum in log space (logsumexp of log|theta_i| + log|dR/dtheta_i|),
    so models whose score overflows float32 (deep stacks, large widths) stay finite. If even
    float64 overflows, all parameters are scaled by alpha < 1 until R is finite, the model's
    degree of homogeneity n is measured from R(alpha) / R(alpha / 2), and
    log S = log S(alpha) - n log alpha is reported (exact for bias-free piecewise-linear nets).

    Token models: ids cannot be "all ones", so the input is one fixed sample of ids (the same
    for every candidate) looked up in the |theta| embedding table: the embedding is a
    parameter like any other, so the model's own input path gives it a positive input, and
    normalisation layers do not see the degenerate constant vector an all-ones embedding
    would be. Continuous inputs (images) are all ones, as in the paper.
    """
    model = model.double().eval()
    originals = [p.detach().abs().clone() for p in model.parameters()]
    inputs = x if token_input else torch.ones_like(x, dtype=torch.float64)

    def score(alpha: float) -> tuple[float, float]:
        with torch.no_grad():
            for p, magnitude in zip(model.parameters(), originals):
                p.copy_(magnitude * alpha)
        model.zero_grad(set_to_none=True)
        out = model(inputs).double().sum()
        if not torch.isfinite(out):
            return math.inf, math.inf
        out.backward()
        terms = [(p.detach() * p.grad).abs().flatten() for p in model.parameters() if p.grad is not None]
        if not terms:
            return math.log(abs(out.item()) or 1e-300), -math.inf
        flat = torch.cat(terms)
        if not torch.isfinite(flat).all():
            return math.inf, math.inf
        flat = flat[flat > 0]
        log_s = torch.logsumexp(flat.log(), 0).item() if flat.numel() else -math.inf
        return math.log(abs(out.item()) or 1e-300), log_s

    log_r, log_s = score(1.0)
    if math.isfinite(log_s):
        return log_s
    if log_s == -math.inf:
        return -700.0                                    # no parameter moves the output: the floor of float64
    alpha = 1.0
    for _ in range(60):                                  # down to alpha = 2^-60
        alpha /= 2.0
        log_r, log_s = score(alpha)
        if math.isfinite(log_s):
            log_r_half, _ = score(alpha / 2.0)
            degree = (log_r - log_r_half) / math.log(2.0)
            return log_s - degree * math.log(alpha)
    return math.inf


def naswot(model: torch.nn.Module, x: torch.Tensor) -> float:
    """log |det K_H|, K_H[i, j] = N_A - Hamming(c_i, c_j), over the samples of a batch.

    From "Neural Architecture Search without Training" (Mellor et al., ICML 2021): c_i is the
    binary code of which units are active (> 0) for sample i, N_A the code length. Here the
    codes are the signs of every `nn.Linear` and `nn.Conv*` output (the pre-activations of the
    non-linearities, wherever the candidate applies them functionally), over all positions of
    a sample for token models. A singular kernel (two samples with identical codes) gets
    1e-6 N_A on the diagonal so the score stays finite.
    """
    codes: list[torch.Tensor] = []

    def hook(module, args, output):
        if isinstance(output, torch.Tensor):
            codes.append((output.detach() > 0).flatten(1).double())

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    if not codes:
        return 0.0
    c = torch.cat(codes, dim=1)                          # [B, N_A]
    n_a = c.shape[1]
    kernel = c @ c.T + (1 - c) @ (1 - c).T               # N_A - Hamming distance
    sign, logdet = torch.linalg.slogdet(kernel)
    if sign <= 0 or not torch.isfinite(logdet):
        sign, logdet = torch.linalg.slogdet(kernel + 1e-6 * n_a * torch.eye(len(kernel), dtype=kernel.dtype))
    return float(logdet)


JACOB_COV_EPS = 1e-5  # the k of Mellor et al.'s score: keeps log and 1/eigenvalue finite


def jacob_cov(model: torch.nn.Module, x: torch.Tensor) -> float:
    """-sum_i [log(lambda_i + k) + 1 / (lambda_i + k)] over the eigenvalues of the input Jacobians' correlations.

    The first score of "Neural Architecture Search without Training" (Mellor et al., 2020 v1),
    as Abdelfattah et al. (ICLR 2021) use it: J_n = d(sum of the outputs)/d(input n) for each
    sample n of the batch, flattened; lambda are the eigenvalues of the correlation matrix of
    the J_n. Networks whose Jacobians are less correlated across samples (they tell inputs
    apart) score higher. Not part of `compute_proxies`: it needs a batch of real inputs to mean
    anything, and for token models the input is not differentiable.
    """
    x = x.detach().clone().requires_grad_(True)
    model.train().zero_grad(set_to_none=True)
    y = model(x)
    y.backward(torch.ones_like(y))
    jacobians = x.grad.detach().reshape(len(x), -1).double()            # [B, input size]
    model.zero_grad(set_to_none=True)
    corr = torch.corrcoef(jacobians)
    if not torch.isfinite(corr).all():                                  # a constant Jacobian row
        return -math.inf
    eig = torch.linalg.eigvalsh(corr).clamp_min(0.0)
    return float(-(torch.log(eig + JACOB_COV_EPS) + 1.0 / (eig + JACOB_COV_EPS)).sum())


ERF_FLOOR = 1e-12  # share below this counts as "no reach" (log floor of about -27.6)


def effective_receptive_field(model: torch.nn.Module, x: torch.Tensor) -> float:
    """log of the share of the input-gradient mass that reaches distant tokens, at initialisation.

    After the effective receptive field of "Understanding the Effective Receptive Field in
    Deep Convolutional Neural Networks" (Luo et al., NeurIPS 2016), for causal sequence
    models: with g_j = ||dS/de_j|| the gradient norm at input position j's embedding e_j and
    S = sum over outputs in the second half of the sequence of <logits_t, r> (r a fixed
    random direction over the vocabulary),

        erf = log( mean_{j < T/4} g_j / mean_j g_j )     (floored at log 1e-12)

    i.e. how much the second half's outputs can hear from at least a quarter of a sequence
    back. A model that cannot move information that far at init (short convolutions, no
    mixer) scores the floor; attention-like mixers score near 0. Recall tasks need that
    reach, which is why it ranks MQAR architectures (`benchmarks/proxy_validation.py`);
    it says nothing about whether the reach is used well. The embedding output is the
    output of the model's `nn.Embedding` modules (their sum, when there are several); a
    model without one scores the floor.
    """
    captured: list[torch.Tensor] = []

    def hook(module, args, output):
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    try:
        logits = model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    captured = [c for c in captured if c.dim() == 3 and c.shape[:2] == x.shape[:2]]
    if not captured or not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        return math.log(ERF_FLOOR)
    T = x.shape[1]
    direction = torch.randn(logits.shape[-1], generator=torch.Generator().manual_seed(PROXY_DATA_SEED))
    (logits[:, T // 2:].float() @ direction.to(logits.device)).sum().backward()
    grads = [c.grad for c in captured if c.grad is not None]
    if not grads:
        return math.log(ERF_FLOOR)
    g = torch.stack([gr.double().norm(dim=-1).mean(0) for gr in grads]).sum(0)      # [T]
    total = g.mean().item()
    if not total > 0:
        return math.log(ERF_FLOOR)
    return math.log(max(g[: max(1, T // 4)].mean().item() / total, ERF_FLOOR))


def _ffn_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    found = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1].lower()
        kind = type(module).__name__.lower()
        if any(n in leaf or n in kind for n in FFN_NAMES):
            if not any(module is f or _contains(f, module) for f in found):
                found.append(module)
    return found


def _contains(parent: torch.nn.Module, child: torch.nn.Module) -> bool:
    return any(m is child for m in parent.modules())


def wpca(model: torch.nn.Module, x: torch.Tensor, variance: float = PCA_VARIANCE) -> float:
    """sum_l k_l, k_l = principal components explaining `variance` of FFN layer l's hidden activations.

    After "W-PCA Based Gradient-Free Proxy for Efficient Search of Lightweight Language
    Models" (Wang et al., ICLR 2025), which scores a network by the PCA dimension of its FFN
    activations at initialisation (more directions used, more capacity) and multiplies it by
    the parameter count; here the unweighted sum is reported and `params` stays a separate
    signal. An FFN is a module whose class or attribute name contains ffn/mlp/feedforward;
    its hidden activation is the input of its last `nn.Linear` (after the non-linearity or
    gate). A model with no such module is measured on the outputs of its widening
    `nn.Linear` layers (out_features > in_features) instead; one with neither scores 0.
    Rows are the tokens (or images) of the batch, at most `PCA_MAX_ROWS` of them.
    """
    captured: list[torch.Tensor] = []
    handles = []
    ffns = _ffn_modules(model)
    for ffn in ffns:
        linears = [m for m in ffn.modules() if isinstance(m, torch.nn.Linear)]
        if linears:
            handles.append(linears[-1].register_forward_pre_hook(
                lambda module, args: captured.append(args[0].detach())))
    if not handles:
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and m.out_features > m.in_features:
                handles.append(m.register_forward_hook(lambda module, args, out: captured.append(out.detach())))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    total = 0
    for act in captured:
        rows = act.reshape(-1, act.shape[-1]).double()[:PCA_MAX_ROWS]
        rows = rows - rows.mean(0, keepdim=True)
        energy = torch.linalg.svdvals(rows) ** 2
        if energy.sum() <= 0:
            continue
        share = torch.cumsum(energy, 0) / energy.sum()
        total += int((share < variance).sum().item()) + 1
    return float(total)
