"""imitlib: the library behind *You can't imitation-learn how to continual-learn*.

Environments, learners (tabular Q-learning, DQN), history recording, the transformer student and the
statistics and plots the book's chapters call. Sizes come from :mod:`imitlib.scale`.
"""

__version__ = "0.1.0"
