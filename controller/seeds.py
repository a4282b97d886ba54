"""Episode seeds: a function of the run's seed and the episode's index alone."""

from __future__ import annotations

import numpy as np


def episode_seed(run_seed: int, index: int) -> int:
    """The reset seed of episode `index`.

    Every episode is reseeded, so its randomness (a child's initialisation, CartPole's start)
    does not depend on which env copy or worker plays it, nor on a restart in between.
    """
    return int(np.random.SeedSequence([run_seed, index]).generate_state(1)[0])
