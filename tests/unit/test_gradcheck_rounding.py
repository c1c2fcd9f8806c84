"""The central-difference check knows its own rounding floor.

J = Σ t ⊙ G has the exact gradient G. With t near 1e6, J is near 1e7 and each evaluation of J is off by
about u·|J| ≈ 1e-9, so the numeric slope is off by ~1e-3 — a correct gradient must still pass (with a
note saying the tolerance was widened), and a wrong one must still fail where the floor is small.
"""

import numpy as np

from nncli.diagnostics.gradcheck import compare


def _check(t, analytic, G):
    t = t.copy()
    return compare(
        "m", "x", t, analytic, lambda: float(t @ G),
        eps=1e-6, rtol=1e-5, atol=1e-8, samples=None, rng=np.random.default_rng(1),
    )  # fmt: skip


def test_a_correct_gradient_of_a_large_objective_passes_and_says_why():
    rng = np.random.default_rng(0)
    G = rng.normal(size=50)
    rep = _check(rng.normal(size=50) + 1e6, G.copy(), G)
    assert rep.max_abs > 1e-5  # rounding alone is far above atol here
    assert rep.passed
    assert any("rounding widened atol" in n for n in rep.notes)


def test_a_wrong_gradient_of_a_small_objective_still_fails():
    rng = np.random.default_rng(0)
    G = rng.normal(size=50)
    rep = _check(rng.normal(size=50), G * (1 + 1e-4), G)
    assert not rep.passed
    assert rep.notes == []  # |J| ≈ 10: the floor stays under atol


def test_the_floor_is_negligible_for_an_objective_near_one():
    rng = np.random.default_rng(0)
    G = rng.normal(size=50) / 50
    rep = _check(rng.normal(size=50), G * (1 + 1e-4), G)
    assert not rep.passed and rep.notes == []
