"""Virtual patient populations: reproducible, diverse and physiological at rest."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vitaltwin.simulate.population import RESTING_LIMITS, sample_population


def test_population_is_reproducible_and_physiological() -> None:
    a = sample_population(40, seed=11)
    b = sample_population(40, seed=11)
    c = sample_population(40, seed=12)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)
    assert len(a.profiles) == 40 and a.params.shape[0] == 40
    for k, (lo, hi) in RESTING_LIMITS.items():
        assert a.resting[k].between(lo, hi).all(), k
    assert 0.0 < a.acceptance_rate <= 1.0
    # diverse: both sexes and a spread of ages and of the sampled physiology
    assert set(a.profiles.sex) == {"male", "female"}
    assert a.profiles.age_years.std() > 8.0
    i = a.model.param_index("hr0_bpm")
    assert a.params[:, i].std() > 3.0


def test_every_virtual_patient_starts_at_rest() -> None:
    pop = sample_population(40, seed=5)
    m = pop.model
    rhs = jax.vmap(m.rhs, in_axes=(None, 0, 0, None))
    d = np.asarray(
        rhs(0.0, jnp.asarray(pop.states), jnp.asarray(pop.params), jnp.asarray(m.default_inputs()))
    )
    drift_per_h = np.abs(d) * 3600.0 / np.maximum(np.abs(pop.states), 1.0)
    assert drift_per_h.max() < 1e-3, m.state_names[int(np.argmax(drift_per_h.max(axis=0)))]
