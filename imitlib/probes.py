"""Linear probes: is a quantity linearly readable from a model's activations, beyond what chance allows?

A probe is ridge regression (scikit-learn, features standardised, the penalty chosen by cross-validation on the
fitting set) from activations to a target, fitted on one set of tasks and scored by R² on *other* tasks. Its
control is the same probe fitted on shuffled targets: a probe that scores no better than its control has found
nothing. Classification into goal cells would fail on held-out goals by construction (their classes never occur
in training), so goals are probed as coordinates.
"""

from __future__ import annotations

import numpy as np


def fit_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              seed: int = 0) -> dict[str, float]:
    """R² on the test set of a ridge probe, and of the same probe fitted on shuffled training targets."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(f"features and targets differ in length: {len(train_x)} vs {len(train_y)} (fit), "
                         f"{len(test_x)} vs {len(test_y)} (test)")

    def score(y: np.ndarray) -> float:
        probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.geomspace(1e-2, 1e4, 13)))
        probe.fit(train_x, y)
        return float(r2_score(test_y, probe.predict(test_x)))

    shuffled = np.random.default_rng(seed).permutation(len(train_y))
    return {"r2": score(train_y), "r2_shuffled": score(np.asarray(train_y)[shuffled])}
