"""Unbiasedness of every estimator against exact gradients, and the negative controls that must fail."""

import numpy as np
import pytest
import torch
from estimator_problems import (
    BERNOULLI_LOGITS,
    CATEGORICAL_LOGITS,
    DTYPE,
    bernoulli_nonsmooth,
    bernoulli_smooth,
    bernoulli_step,
    categorical_nonsmooth,
    categorical_smooth,
    categorical_step,
    exact_bernoulli_gradient,
    exact_categorical_gradient,
    gaussian_exact_gradient,
    gaussian_step_exact_gradient,
    train_phi,
    z_scores,
)

from relax_rl import LAX, REBAR, REINFORCE, RELAX, Concrete, sample_gradients, samplers
from relax_rl.estimators import CategoricalFamily

NUM_SAMPLES = 200_000
BOUND = 4.0  # standard errors per coordinate

PROBLEMS = {
    ("bernoulli", "smooth"): (BERNOULLI_LOGITS, bernoulli_smooth, exact_bernoulli_gradient),
    ("bernoulli", "nonsmooth"): (BERNOULLI_LOGITS, bernoulli_nonsmooth, exact_bernoulli_gradient),
    ("categorical", "smooth"): (CATEGORICAL_LOGITS, categorical_smooth, exact_categorical_gradient),
    ("categorical", "nonsmooth"): (CATEGORICAL_LOGITS, categorical_nonsmooth, exact_categorical_gradient),
    ("bernoulli", "step"): (BERNOULLI_LOGITS, bernoulli_step, exact_bernoulli_gradient),
    ("categorical", "step"): (CATEGORICAL_LOGITS, categorical_step, exact_categorical_gradient),
}
# Estimators that never differentiate f: any f, discontinuous included, keeps them unbiased.
BLACK_BOX = {"reinforce", "reinforce-baseline", "relax", "relax-crn", "relax-raw"}


def _make(name: str, distribution: str) -> torch.nn.Module:
    num_inputs = 3 if distribution == "bernoulli" else 8
    makers = {
        "reinforce": lambda: REINFORCE(distribution),
        "reinforce-baseline": lambda: REINFORCE(distribution, baseline="learned"),
        "rebar": lambda: REBAR(distribution),
        "rebar-crn": lambda: REBAR(distribution, common_random_numbers=True),
        "relax": lambda: RELAX(distribution, num_inputs=num_inputs),
        "relax-crn": lambda: RELAX(distribution, num_inputs=num_inputs, common_random_numbers=True),
        "relaxed-rebar": lambda: RELAX(distribution, num_inputs=num_inputs, mode="relaxed-rebar"),
        "relax-raw": lambda: RELAX(distribution, num_inputs=num_inputs, network_input="raw"),
    }
    return makers[name]().to(DTYPE)


def _untrained(estimator: torch.nn.Module) -> torch.nn.Module:
    """Make an untrained r_φ nonzero (its scale starts at 0, which would make RELAX equal REINFORCE)."""
    net = getattr(estimator, "cv_net", None)
    if net is not None:
        with torch.no_grad():
            net.scale.fill_(1.5)
    return estimator


ESTIMATORS = ["reinforce", "reinforce-baseline", "rebar", "rebar-crn", "relax", "relax-crn", "relaxed-rebar",
              "relax-raw"]


# Plain REINFORCE has no φ to train; REBAR-type estimators differentiate f at relaxed inputs, so they need f
# continuous there (test_rebar_needs_f_continuous_at_relaxed_inputs shows the bias otherwise).
CASES = [
    (name, distribution, f_kind, phi)
    for name in ESTIMATORS
    for distribution in ("bernoulli", "categorical")
    for f_kind in ("smooth", "nonsmooth", "step")
    for phi in ("untrained", "trained")
    if not (phi == "trained" and name == "reinforce") and not (f_kind == "step" and name not in BLACK_BOX)
]


@pytest.mark.parametrize("name, distribution, f_kind, phi", CASES)
def test_discrete_estimators_are_unbiased(name, distribution, f_kind, phi):
    torch.manual_seed(7)
    logits, f, exact_fn = PROBLEMS[(distribution, f_kind)]
    estimator = _untrained(_make(name, distribution))
    if phi == "trained":
        train_phi(estimator, logits, f, steps=150)
    estimates = sample_gradients(estimator, logits, f, NUM_SAMPLES)
    z = z_scores(estimates, exact_fn(f, logits))
    assert torch.all(z.abs() < BOUND), f"z-scores {z}"


@pytest.mark.parametrize("phi", ["untrained", "trained"])
@pytest.mark.parametrize("f_kind", ["smooth", "step"])
def test_lax_is_unbiased(f_kind, phi):
    torch.manual_seed(3)
    mean = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=DTYPE)
    log_std = torch.tensor([[0.1, -0.5], [-0.2, 0.3]], dtype=DTYPE)
    target = torch.tensor([1.0, 0.0], dtype=DTYPE)
    if f_kind == "smooth":
        def f(b):
            return ((b - target) ** 2).sum((-2, -1))

        exact = gaussian_exact_gradient(mean, log_std, target)
    else:
        def f(b):
            return (b > 0).to(b.dtype).sum((-2, -1))

        exact = gaussian_step_exact_gradient(mean, log_std)
    estimator = LAX(num_inputs=4).to(DTYPE)
    if phi == "trained":
        train_phi(estimator, (mean, log_std), f, steps=150)
    estimates = sample_gradients(estimator, (mean, log_std), f, NUM_SAMPLES)
    for est, ex in zip(estimates, exact, strict=True):
        z = z_scores(est, ex)
        assert torch.all(z.abs() < BOUND), f"z-scores {z}"


# ----------------------------------------------------------------------------------------------
# Negative controls: the same check must reject known-wrong estimators, or it proves nothing.
# ----------------------------------------------------------------------------------------------
def _max_abs_z(estimator, logits, f, exact_fn) -> float:
    torch.manual_seed(11)
    estimates = sample_gradients(estimator, logits, f, NUM_SAMPLES)
    return float(z_scores(estimates, exact_fn(f, logits)).abs().max())


@pytest.mark.parametrize("distribution", ["bernoulli", "categorical"])
def test_concrete_is_biased_at_nonzero_temperature(distribution):
    logits, f, exact_fn = PROBLEMS[(distribution, "smooth")]
    assert _max_abs_z(Concrete(distribution, temperature=0.5), logits, f, exact_fn) > 3 * BOUND


@pytest.mark.parametrize("distribution", ["bernoulli", "categorical"])
def test_rebar_needs_f_continuous_at_relaxed_inputs(distribution):
    """Documents REBAR's assumption: with a jump in f, ∇E[f(σ_λ(z))] ≠ E[∇f(σ_λ(z))] and the estimate is biased."""
    logits, f, exact_fn = PROBLEMS[(distribution, "step")]
    assert _max_abs_z(REBAR(distribution).to(DTYPE), logits, f, exact_fn) > 2 * BOUND


@pytest.mark.parametrize("distribution", ["bernoulli", "categorical"])
def test_rebar_with_a_continuous_f_relaxed_is_unbiased_for_a_step_f(distribution):
    """f_relaxed only shapes c_φ: REBAR on a step f is unbiased once c_φ's relaxed f is continuous.

    The negative control is test_rebar_needs_f_continuous_at_relaxed_inputs (the same f, relaxed as is)."""
    logits, f_step, exact_fn = PROBLEMS[(distribution, "step")]
    f_smooth = PROBLEMS[(distribution, "smooth")][1]
    rebar = REBAR(distribution).to(DTYPE)

    def split(params, f):
        return rebar(params, f, f_relaxed=f_smooth)

    torch.manual_seed(11)
    estimates = sample_gradients(split, logits, f_step, NUM_SAMPLES)
    z = z_scores(estimates, exact_fn(f_step, logits))
    assert torch.all(z.abs() < BOUND), f"z-scores {z}"


class _OriginalBiasedCategorical(CategoricalFamily):
    """The original RL code's z̃_b = ℓ_b − log(−log v_b) (its authors called it biased)."""

    def conditional(self, logits, b, v):
        z_tilde = samplers.categorical_conditional(logits, b, v)
        log_p = torch.log_softmax(logits, -1)
        index = b.unsqueeze(-1)
        wrong_top = log_p.gather(-1, index) - torch.log(-torch.log(v.gather(-1, index)))
        return z_tilde.scatter(-1, index, wrong_top)


class _DetachedCategorical(CategoricalFamily):
    def conditional(self, logits, b, v):
        return samplers.categorical_conditional(logits, b, v).detach()


class _DetachedBernoulli:
    """Bernoulli family whose z̃ is cut from θ (an earlier public implementation's bug)."""

    def __new__(cls):
        from relax_rl.estimators import BernoulliFamily

        class Detached(BernoulliFamily):
            def conditional(self, logits, b, v):
                return samplers.bernoulli_conditional(logits, b, v).detach()

        return Detached()


@pytest.mark.parametrize(
    "distribution, family",
    [("categorical", _OriginalBiasedCategorical), ("categorical", _DetachedCategorical),
     ("bernoulli", _DetachedBernoulli)],
)
def test_wrong_conditional_samplers_fail_the_unbiasedness_check(distribution, family):
    logits, f, exact_fn = PROBLEMS[(distribution, "smooth")]
    estimator = REBAR(distribution).to(DTYPE)
    assert _max_abs_z(estimator, logits, f, exact_fn) < BOUND  # the right sampler passes ...
    estimator.family = family()
    assert _max_abs_z(estimator, logits, f, exact_fn) > 2 * BOUND  # ... the wrong one is caught


def test_lax_with_fresh_noise_in_the_control_variate_is_biased():
    """Trap 2 of DESIGN §5: evaluating c at a fresh ε instead of the executed action's is biased."""
    from relax_rl.estimators import lax_surrogate

    torch.manual_seed(5)
    mean = torch.tensor([0.3, -0.2], dtype=DTYPE)
    log_std = torch.tensor([0.1, -0.5], dtype=DTYPE)
    target = torch.tensor([1.0, 0.0], dtype=DTYPE)

    def f(b):
        return ((b - target) ** 2).sum(-1)

    cv = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(DTYPE)
    with torch.no_grad():
        cv[2].weight.mul_(4.0)  # a control variate with a clearly nonzero ∇E[c], so the bias ∇E[c] shows

    def wrong(params, f):
        m, s = params
        b = (m + s.exp() * torch.randn_like(m)).detach()
        fresh = m + s.exp() * torch.randn_like(m)
        log_prob = torch.distributions.Normal(m, s.exp()).log_prob(b).sum(-1)
        # the control variate of both terms sits at a fresh draw, not at the executed sample b
        c_fresh = cv(fresh).squeeze(-1)
        return lax_surrogate(log_prob, f(b), c_fresh, cv(fresh.detach()).squeeze(-1)), b

    exact = gaussian_exact_gradient(mean, log_std, target)
    estimates = sample_gradients(wrong, (mean, log_std), f, NUM_SAMPLES)
    worst = max(float(z_scores(e, x).abs().max()) for e, x in zip(estimates, exact, strict=True))
    assert worst > 2 * BOUND
    right = LAX(control_variate=torch.nn.Sequential(cv, torch.nn.Flatten(-2)))
    estimates = sample_gradients(right, (mean, log_std), f, NUM_SAMPLES)
    assert max(float(z_scores(e, x).abs().max()) for e, x in zip(estimates, exact, strict=True)) < BOUND


# ----------------------------------------------------------------------------------------------
# Shapes, samples and bad input
# ----------------------------------------------------------------------------------------------
def test_sample_is_hard_and_surrogate_is_per_sample():
    logits = torch.zeros(5, 3, 4)
    surrogate, sample = RELAX("categorical", num_inputs=12)(logits, lambda b: b.sum((-2, -1)))
    assert surrogate.shape == (5,)
    assert sample.shape == (5, 3, 4) and torch.all(sample.sum(-1) == 1)
    surrogate, sample = REBAR("bernoulli")(torch.zeros(5, 3), lambda b: b.sum(-1))
    assert surrogate.shape == (5,) and set(sample.unique().tolist()) <= {0.0, 1.0}


def test_replayed_noise_gives_identical_results():
    est = RELAX("bernoulli", num_inputs=3)
    logits = torch.randn(4, 3)
    noise = (samplers.uniform_noise((4, 3)), samplers.uniform_noise((4, 3)))
    a, sa = est(logits, bernoulli_smooth_float, noise=noise)
    b, sb = est(logits, bernoulli_smooth_float, noise=noise)
    assert torch.equal(a, b) and torch.equal(sa, sb)


def bernoulli_smooth_float(b):
    return ((b - 0.45) ** 2).sum(-1)


def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="unknown distribution 'gaussian'.*bernoulli"):
        RELAX("gaussian", num_inputs=3)
    with pytest.raises(ValueError, match="num_inputs"):
        RELAX("bernoulli")
    with pytest.raises(ValueError, match="mode"):
        RELAX("bernoulli", num_inputs=2, mode="rebar")
    with pytest.raises(ValueError, match="f returned shape"):
        REINFORCE("bernoulli")(torch.zeros(4, 3), lambda b: b.sum(-1, keepdim=True).expand(4, 5))
    with pytest.raises(ValueError, match=r"call estimator.to\(torch.float64\)"):
        RELAX("bernoulli", num_inputs=3)(torch.zeros(2, 3, dtype=torch.float64), lambda b: b.sum(-1))
    with pytest.raises(ValueError, match=r"\(mean, log_std\)"):
        LAX(num_inputs=2)(torch.zeros(2), lambda b: b.sum(-1))
    with pytest.raises(ValueError, match="baseline"):
        REINFORCE("bernoulli", baseline="adaptive")
    with pytest.raises(ValueError, match="temperature"):
        REBAR("bernoulli", temperature=0.0)
    with pytest.raises(ValueError, match=r"takes 3 inputs per sample, got x of shape \(8, 5\)"):
        RELAX("categorical", num_inputs=3)(torch.zeros(8, 5), lambda b: b.sum(-1))
    with pytest.raises(ValueError, match=r"takes 2 inputs per sample"):
        LAX(num_inputs=2)((torch.zeros(8, 3), torch.zeros(8, 3)), lambda b: b.sum(-1))
    with pytest.raises(ValueError, match="floating-point logits tensor.*dtype torch.int64"):
        RELAX("bernoulli", num_inputs=3)(torch.zeros(2, 3, dtype=torch.long), lambda b: b.sum(-1))
    with pytest.raises(ValueError, match="floating-point torch tensors.*got tuple of ndarray, ndarray"):
        LAX(num_inputs=2)((np.zeros((2, 2)), np.zeros((2, 2))), lambda b: b.sum(-1))


def test_f_with_one_value_per_bernoulli_gives_each_its_own_one_input_control_variate():
    """f(b) of shape [..., n] makes every Bernoulli its own sample: c_φ then reads one relaxed input each."""
    torch.manual_seed(0)
    estimator = RELAX("bernoulli", num_inputs=1)
    with torch.no_grad():
        estimator.cv_net.scale.fill_(1.0)  # a non-zero c_φ, so the control variate takes part
    n = 20000
    logit = torch.tensor(0.3, requires_grad=True)
    surrogate, hard = estimator(logit.expand(n, 5), lambda b: (b - 0.4) ** 2)
    assert surrogate.shape == hard.shape == (n, 5)
    per_sample = torch.stack([torch.autograd.grad(s, logit, retain_graph=True)[0] for s in surrogate[:, 0][:200]])
    estimate = torch.autograd.grad(surrogate.mean() * 5, logit)[0] / 5  # one variable's gradient, averaged
    p = torch.sigmoid(logit.detach())
    exact = p * (1 - p) * (0.6**2 - 0.4**2)  # d/dlogit of E(b − 0.4)² = p·0.36 + (1 − p)·0.16
    standard_error = per_sample.std() / (5 * n) ** 0.5
    assert abs(float(estimate - exact)) < 4.5 * float(standard_error)
