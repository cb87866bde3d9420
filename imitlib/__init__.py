"""imitlib: the library behind *You can't imitation-learn how to continual-learn*.

Where things are (data flows down the list: env -> learner -> recorder -> student -> stats -> the page):

- ``envs``: Dark Room (gymnasium), MinAtar and ALE games with explicit settings; ``envs.observations``: one way to
  store frames and feed them to networks (replay, recorder and student share it)
- ``tabular``: batched tabular Q-learning; ``dqn``: deep Q-learning, several seeds in one process (``qnets``: its
  stacked networks; ``replay``: its replay buffer; ``dqn_checkpoint``: resumable checkpoints; ``dqn_reference``:
  the plain one-seed loop that tests it)
- ``history``: learning histories on disk and the context windows read back from them; ``recorders``: attach to
  a learner and write what it plays; ``export``: a history as a Minari dataset
- ``transformer``: the causal student; ``imitation``: its training and frozen rollouts
- ``icl``: linear self-attention vs gradient descent; ``probes``: linear probes of activations
- ``stats``, ``plots``, ``widgets``: intervals across seeds, one figure style, notebook explorers
- ``scale``: the ci / lab / full sizes; ``artifacts``: stored results with provenance; ``io``: atomic files,
  checkpoints
- ``experiments``: one module per experiment (``tabular``, ``teacher``, ``histories``, ``students``,
  ``game_students``, ``regression``, ``incontext``, ``probing``, ``beyond``): pipeline, artifact, the numbers and
  verdicts its chapter cites; ``common``: load or explain; ``fingerprints``: digests of what results were made from
- ``book``: glue for the prose (with or without myst-nb), tables, provenance, what each chapter loads
- ``cli``: ``python -m imitlib ...`` runs any pipeline headless; ``restamp``: fresh hashes for proven-unchanged results
"""

__version__ = "0.1.0"
