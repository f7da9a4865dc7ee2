"""Attribution methods over feature coalitions, in numpy: occlusion and KernelSHAP.

Both see the model only through ``value(masks) -> values``: ``masks`` is a (k, M) boolean matrix
(True: feature i keeps the input's value; False: it takes the baseline's) and ``values`` the
model's target output for each of those k inputs, in order. Every mask a method needs is asked for
in one call, so the caller (:mod:`packager.explain.run`) can send them in batched requests.

- occlusion: phi_i = f(x) - f(x with feature i at the baseline); M + 2 evaluations.
- KernelSHAP (Lundberg & Lee 2017): the weighted least squares fit of f over coalitions with the
  Shapley kernel, with sum(phi) = f(x) - f(baseline) enforced exactly by eliminating one
  variable. With few features every coalition is enumerated and the result is the exact Shapley
  values; otherwise coalitions are sampled (in complementary pairs) from the kernel's size
  distribution, reproducibly from a seed.

For a linear f both give w_i * (x_i - baseline_i).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import comb

import numpy as np

from packager.errors import PackagerError

METHODS = ("occlusion", "kernelshap")
MAX_EXACT_FEATURES = 12  # 2**12 - 2 = 4094 coalitions: every one is evaluated (exact Shapley)

Value = Callable[[np.ndarray], np.ndarray]  # (k, M) bool masks -> (k,) target values


@dataclass(frozen=True)
class Attribution:
    """Per-feature attributions and the two values they are measured between."""

    values: np.ndarray  # (M,) float64
    base: float  # f(baseline): every feature off
    prediction: float  # f(x): every feature on
    evaluations: int  # model inputs evaluated (rows sent)
    exact: bool  # True when no coalition was sampled

    @property
    def gap(self) -> float:
        """sum(phi) - (f(x) - f(baseline)): 0 for KernelSHAP; occlusion's interaction share."""
        return float(self.values.sum() - (self.prediction - self.base))


def occlusion(value: Value, n_features: int) -> Attribution:
    """Each feature's drop in the target when it alone is set to the baseline."""
    _check_features(n_features)
    masks = np.ones((n_features + 2, n_features), dtype=bool)
    masks[1] = False  # row 0: the input; row 1: the baseline; row 2 + i: feature i off
    masks[np.arange(2, n_features + 2), np.arange(n_features)] = False
    f = _values(value, masks)
    return Attribution(f[0] - f[2:], float(f[1]), float(f[0]), len(masks), exact=True)


def exact_is_possible(n_features: int, samples: int) -> bool:
    """Whether KernelSHAP enumerates every coalition (few features, or enough samples)."""
    return n_features <= MAX_EXACT_FEATURES or 2**n_features - 2 <= samples


def coalitions(
    n_features: int, samples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, bool]:
    """(masks, weights, exact): every proper non-empty coalition with its Shapley kernel weight,
    or ``samples`` of them drawn from the kernel's distribution (then equally weighted)."""
    m = n_features
    if exact_is_possible(m, samples):
        ids = np.arange(1, 2**m - 1, dtype=np.int64)
        masks = ((ids[:, None] >> np.arange(m)) & 1).astype(bool)
        sizes = masks.sum(axis=1)
        binom = np.array([comb(m, int(s)) for s in range(m + 1)], dtype=np.float64)
        weights = (m - 1) / (binom[sizes] * sizes * (m - sizes))
        return masks, weights, True
    if samples < 2 * m:
        raise PackagerError(
            f"KernelSHAP over {m} features needs at least {2 * m} samples to fit them "
            f"(got {samples}); raise --samples, use larger patches, or --method occlusion"
        )
    sizes = np.arange(1, m)
    p = (m - 1) / (sizes * (m - sizes))
    pairs = samples // 2
    drawn = rng.choice(sizes, size=pairs, p=p / p.sum())
    # A random subset of each drawn size: the features whose random rank falls below it.
    ranks = rng.random((pairs, m)).argsort(axis=1).argsort(axis=1)
    half = ranks < drawn[:, None]
    # Complementary pairs cancel the sampling error of the symmetric part (as the shap package).
    masks = np.concatenate([half, ~half])
    return masks, np.ones(len(masks)), False


def kernelshap(value: Value, n_features: int, samples: int = 1024, seed: int = 0) -> Attribution:
    """Shapley values by KernelSHAP; exact when every coalition fits in ``samples`` or M <= 12."""
    _check_features(n_features)
    m = n_features
    if m == 1:  # a single player takes the whole difference
        f = _values(value, np.array([[True], [False]]))
        return Attribution(np.array([f[0] - f[1]]), float(f[1]), float(f[0]), 2, exact=True)
    masks, weights, exact = coalitions(m, samples, np.random.default_rng(seed))
    ends = np.array([np.ones(m, bool), np.zeros(m, bool)])
    f = _values(value, np.concatenate([ends, masks]))
    full, empty, y = f[0], f[1], f[2:] - f[1]
    delta = full - empty
    z = masks.astype(np.float64)
    # Efficiency as a constraint: phi_last = delta - sum(phi_rest), substituted into the fit.
    a = z[:, :-1] - z[:, -1:]
    b = y - z[:, -1] * delta
    root = np.sqrt(weights)
    head, *_ = np.linalg.lstsq(a * root[:, None], b * root, rcond=None)
    phi = np.append(head, delta - head.sum())
    return Attribution(phi, float(empty), float(full), len(masks) + 2, exact=exact)


def _check_features(n_features: int) -> None:
    if n_features < 1:
        raise PackagerError("there is nothing to attribute: the input has no features")


def _values(value: Value, masks: np.ndarray) -> np.ndarray:
    out = np.asarray(value(masks), dtype=np.float64).reshape(-1)
    assert out.shape == (len(masks),), (out.shape, masks.shape)
    return out
