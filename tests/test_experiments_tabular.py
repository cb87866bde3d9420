"""Chapter 1's numbers: thresholds as named, windows around the move, interval text."""

import numpy as np
import pytest

from imitlib import stats
from imitlib.artifacts import Artifact
from imitlib.experiments import tabular


def artifact(**arrays) -> Artifact:
    return Artifact(data={k: np.asarray(v) for k, v in arrays.items()}, provenance={}, path=None, loaded=False)


def test_ci_text_is_the_prose_form():
    assert tabular.ci_text(stats.Interval(1.234, 1.0, 1.5)) == "1.23 (95% CI 1.00–1.50)"


def test_reaching_needs_ninety_percent_of_optimal():
    episodes = 60
    ramp = np.minimum(np.arange(episodes) / 30, 1.0) * 10.0  # its 10-episode mean reaches 9.0 at episode 32
    greedy = np.stack([np.tile(ramp, (3, 1)), np.full((3, episodes), 8.9)])  # second learner stops at 89%
    behaviour = np.ones((2, 3, episodes))
    nums = tabular.learning_numbers(artifact(optimal=10.0, random=0.5, learn_greedy=greedy, learn_returns=behaviour))
    assert nums["ch1_reach_plain"].startswith("32 episodes")  # mean of episodes 23..32 = 27.5 / 3 >= 9
    assert nums["ch1_reach_optimistic"].startswith("never")
    assert nums["ch1_final_plain"] == "1.00 (95% CI 1.00–1.00)"


@pytest.mark.parametrize("level, recovers", [(8.0, True), (7.9, False)])
def test_recovery_is_eighty_percent_of_the_new_optimum(level, recovers):
    n = 30
    curve = np.concatenate([np.full(n, 10.0), np.full(n, level)])
    switch = np.tile(curve, (2, 3, 1))
    nums = tabular.switch_numbers(artifact(switch_returns=switch, optimal_moved=10.0, random_moved=0.3), n)
    assert nums["ch1_before_plain"] == 10.0
    assert nums["ch1_after_plain"] == pytest.approx(level) and nums["ch1_end_plain"] == pytest.approx(level)
    assert nums["ch1_recover_plain"].startswith("9 episodes") == recovers
    assert nums["ch1_switch_at"] == n
