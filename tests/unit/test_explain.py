"""explain's methods and features, in numpy: a linear model's attributions are known exactly
(w * (x - baseline)), and exact KernelSHAP must equal Shapley values computed by definition."""

from __future__ import annotations

import itertools
import json
from math import factorial
from pathlib import Path

import numpy as np
import pytest

from packager.errors import PackagerError
from packager.explain import explain
from packager.explain.features import ImagePatches, TabularFeatures, TextTokens, numeric_baseline
from packager.explain.methods import coalitions, kernelshap, occlusion

RNG = np.random.default_rng(7)
W = RNG.normal(size=(30, 3))
B = RNG.normal(size=3)


def linear(inputs):
    return {"y": inputs["x"] @ W + B}


@pytest.mark.parametrize("method", ["occlusion", "kernelshap"])
@pytest.mark.parametrize("n", [1, 8, 30])  # 30 features: KernelSHAP samples coalitions
def test_linear_attributions_are_weight_times_input_minus_baseline(method: str, n: int) -> None:
    x, base = RNG.normal(size=n), RNG.normal(size=n)
    w = W[:n]
    e = explain(
        lambda d: {"y": d["x"] @ w + B}, "lin", {"x": x}, method=method, baseline=base,
        target=2, samples=256,
    )  # fmt: skip
    np.testing.assert_allclose(e.attributions, w[:, 2] * (x - base), atol=1e-6)
    assert abs(e.additivity_gap) < 1e-9
    assert e.prediction == pytest.approx(float(x @ w[:, 2] + B[2]))
    assert e.base_value == pytest.approx(float(base @ w[:, 2] + B[2]))
    assert e.exact == (method == "occlusion" or n <= 12)


def shapley_by_definition(f, m: int) -> np.ndarray:
    """phi_i = sum over S not containing i of |S|!(m-|S|-1)!/m! (f(S+i) - f(S))."""
    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for r in range(m):
            for s in itertools.combinations(others, r):
                mask = np.zeros(m, bool)
                mask[list(s)] = True
                with_i = mask.copy()
                with_i[i] = True
                w = factorial(r) * factorial(m - r - 1) / factorial(m)
                phi[i] += w * (f(with_i[None])[0] - f(mask[None])[0])
    return phi


def nonlinear(masks: np.ndarray) -> np.ndarray:
    x = np.where(masks, np.array([1.0, 2.0, -1.0, 3.0, 0.5]), 0.0)
    return x[:, 0] * x[:, 1] + np.maximum(x[:, 2], x[:, 3]) + np.sin(x[:, 4] * x[:, 0])


def test_exact_kernelshap_equals_shapley_values_of_a_nonlinear_function() -> None:
    got = kernelshap(nonlinear, 5)
    assert got.exact and got.evaluations == 2**5
    np.testing.assert_allclose(got.values, shapley_by_definition(nonlinear, 5), atol=1e-10)
    assert abs(got.gap) < 1e-12


def test_occlusion_reports_its_additivity_gap_on_interactions() -> None:
    got = occlusion(nonlinear, 5)
    full, empty = nonlinear(np.ones((1, 5), bool))[0], nonlinear(np.zeros((1, 5), bool))[0]
    assert got.evaluations == 7
    assert got.gap == pytest.approx(got.values.sum() - (full - empty))
    assert abs(got.gap) > 0.1  # x0 * x1 is counted twice: occlusion is not additive


def sampled_function(masks: np.ndarray) -> np.ndarray:
    x = masks.astype(float)
    return (x @ np.arange(20.0)) + 5 * x[:, 0] * x[:, 1] * x[:, 2] + np.tanh(x[:, 3:9].sum(1))


def test_sampled_kernelshap_is_additive_reproducible_and_seeded() -> None:
    a = kernelshap(sampled_function, 20, samples=400, seed=3)
    b = kernelshap(sampled_function, 20, samples=400, seed=3)
    c = kernelshap(sampled_function, 20, samples=400, seed=4)
    assert not a.exact and a.evaluations == 402
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert abs(a.gap) < 1e-9 and abs(c.gap) < 1e-9
    # Sampled, yet unbiased: the error to the true Shapley values shrinks with the samples.
    truth = np.arange(20.0)
    truth[:3] += 5 / 3  # the three-way product is shared equally
    truth[3:9] += np.tanh(6) / 6  # tanh of a symmetric sum likewise
    many = kernelshap(sampled_function, 20, samples=6400, seed=3)
    assert np.abs(a.values - truth).max() < 0.5
    assert np.abs(many.values - truth).max() < 0.15


def test_coalitions_are_every_proper_subset_with_shapley_kernel_weights() -> None:
    masks, weights, exact = coalitions(4, 10, np.random.default_rng(0))
    assert exact and len(masks) == 14 and len({m.tobytes() for m in masks}) == 14
    sizes = masks.sum(1)
    assert set(sizes) == {1, 2, 3}
    np.testing.assert_allclose(weights[sizes == 1], 3 / (4 * 1 * 3))
    np.testing.assert_allclose(weights[sizes == 2], 3 / (6 * 2 * 2))
    sampled, w, exact = coalitions(30, 100, np.random.default_rng(0))
    assert not exact and sampled.shape == (100, 30) and (w == 1).all()
    np.testing.assert_array_equal(sampled[:50], ~sampled[50:])  # complementary pairs
    with pytest.raises(PackagerError, match="at least 60 samples"):
        coalitions(30, 59, np.random.default_rng(0))


def test_requests_carry_batch_size_rows() -> None:
    sizes: list[int] = []

    def predict(d):
        sizes.append(len(d["x"]))
        return linear(d)

    e = explain(predict, "lin", {"x": RNG.normal(size=30)}, method="occlusion", batch_size=7)
    assert sizes[0] == 1  # the probe that finds the target
    assert sizes[1:] == [7, 7, 7, 7, 4] and e.requests == 5 and e.evaluations == 32


def test_image_patches_split_and_reassemble() -> None:
    x = RNG.normal(size=(10, 12, 3)).astype(np.float32)
    base = np.zeros_like(x)
    p = ImagePatches(x, base, 4, "last")
    assert p.grid == (3, 3) and p.count == 9
    labels = p.labels()
    assert labels.shape == (10, 12) and set(np.unique(labels)) == set(range(9))
    assert (labels[8:, 8:] == 8).all() and (labels[:4, :4] == 0).all()
    out = p.compose(np.array([[True] * 9, [False] * 9, [i == 4 for i in range(9)]]))
    np.testing.assert_array_equal(out[0], x)
    np.testing.assert_array_equal(out[1], base)
    np.testing.assert_array_equal(out[2][4:8, 4:8], x[4:8, 4:8])
    assert not out[2][:4].any() and out.dtype == np.float32
    first = ImagePatches(np.moveaxis(x, -1, 0), np.moveaxis(base, -1, 0), 4, "first")
    one = first.compose(np.array([[i == 4 for i in range(9)]]))[0]
    np.testing.assert_array_equal(np.moveaxis(one, 0, -1), out[2])


def test_image_heatmap_of_a_linear_model_sums_weights_per_patch() -> None:
    w = RNG.normal(size=(10, 12, 2))
    img = RNG.normal(size=(10, 12))

    def predict(d):
        return {"y": np.einsum("khw,hwc->kc", d["img"], w)}

    e = explain(predict, "img", {"img": img}, method="kernelshap", patch=4, target=1)
    per_pixel = w[..., 1] * img
    expected = np.array([[per_pixel[r : r + 4, c : c + 4].sum() for c in (0, 4, 8)]
                         for r in (0, 4, 8)])  # fmt: skip
    assert e.grid == (3, 3) and e.exact
    np.testing.assert_allclose(e.heatmap(), expected, atol=1e-9)


def test_text_tokens_split_and_reassemble() -> None:
    t = TextTokens("The weather isn't lovely, today.")
    assert t.names == ["The", "weather", "isn't", "lovely", ",", "today", "."]
    assert t.render(np.ones(7, bool)) == t.text
    assert t.render(np.array([1, 0, 1, 1, 0, 1, 1], bool)) == "The isn't lovely today."
    assert t.render(np.array([0, 1, 1, 1, 1, 1, 1], bool)) == "weather isn't lovely, today."
    assert t.render(np.zeros(7, bool)) == ""
    masked = TextTokens("a b c", "[MASK]")
    assert masked.render(np.array([1, 0, 1], bool)) == "a [MASK] c"
    out = masked.compose(np.array([[1, 1, 1], [0, 0, 1]], bool))
    assert out.shape == (2, 1) and out[1, 0] == "[MASK] [MASK] c"


def test_text_attributions_of_a_word_counting_model() -> None:
    scores = {"lovely": 2.0, "not": -1.5}

    def predict(d):
        texts = [row[0] for row in d["TEXT"]]
        return {"p": np.array([[sum(scores.get(w, 0.0) for w in t.split())] for t in texts])}

    e = explain(predict, "words", "it is not lovely", method="kernelshap", explain_input="TEXT")
    assert e.features == ["it", "is", "not", "lovely"] and e.kind == "text"
    np.testing.assert_allclose(e.attributions, [0, 0, -1.5, 2.0], atol=1e-12)
    assert "title='+2'" in e.html() and "lovely</span>" in e.html()
    assert "lovely" in e.ansi()


def test_baselines(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert (numeric_baseline("mean", x, "tabular")[0] == 5.5).all()
    assert (numeric_baseline("0.5", x, "tabular")[0] == 0.5).all()
    flat = np.full((4, 5, 3), 2.0, np.float32)
    blurred, how = numeric_baseline("blur", flat, "image", "last", 2)
    np.testing.assert_allclose(blurred, flat, rtol=1e-6)  # a flat image stays flat
    assert how == "blur (2 px)"
    chan = numeric_baseline("mean", RNG.normal(size=(3, 4, 5)), "image", "first")[0]
    assert np.ptp(chan[0]) == 0 and chan.shape == (3, 4, 5)
    np.save(tmp_path / "good.npy", np.ones((1, 3, 4)))
    assert numeric_baseline(str(tmp_path / "good.npy"), x, "tabular")[0].shape == (3, 4)
    np.save(tmp_path / "bad.npy", np.ones(5))
    with pytest.raises(
        PackagerError, match=r"shape \[5\]; it must have the input's shape \[3, 4\]"
    ):
        numeric_baseline(str(tmp_path / "bad.npy"), x, "tabular")
    with pytest.raises(PackagerError, match="for images"):
        numeric_baseline("blur", x, "tabular")
    with pytest.raises(PackagerError, match="unknown baseline 'median'"):
        numeric_baseline("median", x, "tabular")


def test_tabular_names_and_compose() -> None:
    t = TabularFeatures(np.arange(4.0).reshape(2, 2), np.zeros((2, 2)), "x")
    assert t.names == ["x[0,0]", "x[0,1]", "x[1,0]", "x[1,1]"]
    np.testing.assert_array_equal(t.compose(np.array([[1, 0, 0, 1]], bool))[0], [[0, 0], [0, 3]])


def test_clear_errors() -> None:
    x = {"x": RNG.normal(size=30)}
    with pytest.raises(PackagerError, match=r"target 3 is out of range: output 'y' has 3 value"):
        explain(linear, "lin", x, target=3)
    with pytest.raises(PackagerError, match="no output 'z'; its outputs are: y"):
        explain(linear, "lin", x, output="z")
    with pytest.raises(PackagerError, match="unknown method"):
        explain(linear, "lin", x, method="lime")
    with pytest.raises(PackagerError, match="several inputs"):
        explain(linear, "lin", {"x": x["x"], "k": np.ones(2)})
    with pytest.raises(PackagerError, match="holds numbers: it cannot be explained as text"):
        explain(linear, "lin", x, kind="text")


def test_auto_target_json_and_pictures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from packager.explain.plot import save_plot

    x = RNG.normal(size=30)
    e = explain(linear, "lin", {"x": x})
    assert e.target == int(np.argmax(x @ W + B))
    doc = json.loads(json.dumps(e.to_dict()))
    assert len(doc["attributions"]) == 30 and doc["features"][0] == "x[0]"
    img = explain(lambda d: {"y": d["i"].sum((1, 2))[:, None]}, "i", {"i": np.ones((16, 16))})
    words = explain(lambda d: {"y": np.ones((len(d["t"]), 1))}, "t", {"t": "two words"})
    for name, exp in {"tab": e, "img": img, "txt": words}.items():
        path = save_plot(exp, tmp_path / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    assert img.to_dict()["heatmap"] == img.heatmap().tolist() and img.grid == (8, 8)
