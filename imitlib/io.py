"""Files that must survive interruption: the errors a resumed run can meet.

A checkpoint on disk belongs to one run (one config, one set of seeds, one game). Resuming a different run from it
would mix two experiments silently, so every learner refuses it with :class:`CheckpointMismatchError`, which the
CLI reports in one line.
"""

from __future__ import annotations


class CheckpointMismatchError(ValueError):
    """A checkpoint was written for a different run (game, network, seeds or config) than the one resuming."""
