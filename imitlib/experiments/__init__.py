"""The book's experiments, one module per experiment: its config, its pipeline, its stored artifact, and the
numbers, tables, figures and verdicts its chapter prints.

| module | chapter | computes |
| --- | --- | --- |
| ``tabular`` | 1 | tabular Q-learners on Dark Room, from scratch and after a goal switch |
| ``teacher`` | 2 (and 3) | DQN teachers on MinAtar or ALE, recording their learning histories as they learn |
| ``histories`` | 3 | Dark Room learning histories and expert episodes; what a recorded history shows |
| ``students`` | 4 | ED and AD transformer students, and the snapshot test |
| ``regression`` | 5 | in-context linear regression: a trained attention layer vs one gradient-descent step |
| ``incontext`` | 5 | frozen students on held-out goals for many episodes, and the ablations |
| ``probing`` | 5 | linear probes of the AD student's residual stream |
| ``beyond`` | 6 | frozen AD students far past their (whole or truncated) history; chapter 6's shared reading |
| ``moving``, ``noise`` | 6 | goals that move; noise-distilled histories (AD^eps) and their controls |
| ``game_beyond`` | 6 | AD students on the MinAtar teachers' learning histories |
| ``transfer`` | 7 | the shared "learns the new game" verdict |
| ``transplant``, ``new_game`` | 7 | the teacher moved into Space Invaders; Breakout's frozen students there |
| ``relabelled_room`` | 7 | chapter 4's AD students in Dark Rooms with relabelled actions |
| ``leave_one_out`` | 7 | AD students on four other games' histories, frozen on Space Invaders |
| ``conclusions`` | 8 | the three questions' evidence table, read from stored results only (nothing recomputed) |
| ``common`` | | artifact folders, recorded datasets, loading a result or saying how to compute it |
| ``fingerprints`` | | digests of what stored results were made from: the proof behind ``restamp`` |

A pipeline takes a frozen config (built from the scale by a function named after the experiment) and returns a
dict of numpy arrays; its ``*_artifact`` function wraps it in :func:`imitlib.artifacts.cached`, so an expensive
result is computed once, stored with provenance, and loaded by the book afterwards. The names below are the
pipelines, re-exported so that ``experiments.teacher_artifact(...)`` reads the same from the CLI and the tests.
"""

from __future__ import annotations

from imitlib.experiments.common import (  # noqa: F401
    ready,
    recorded_dataset,
)
from imitlib.experiments.game_students import (  # noqa: F401
    GAME_STUDENT_CODE,
    GameStudents,
    game_students_artifact,
    game_students_config,
    game_students_name,
    run_game_students,
)
from imitlib.experiments.histories import (  # noqa: F401
    ACTION_NAMES,
    DarkRoomHistories,
    darkroom_histories,
    darkroom_histories_config,
    goal_split,
    history_sources,
    minatar_histories_artifact,
    minatar_histories_name,
    minatar_histories_ready,
    record_darkroom,
    source_returns,
    summarise_history,
    visitation,
)
from imitlib.experiments.incontext import (  # noqa: F401
    ABLATIONS,
    InContextTest,
    ablation_effects,
    ablation_test,
    in_context_artifact,
    in_context_change,
    in_context_config,
    in_context_name,
    in_context_ready,
    learning_prompt,
    run_in_context,
    source_curves,
)
from imitlib.experiments.probing import (  # noqa: F401
    ProbeTest,
    probe_features,
    probes_artifact,
    run_probes,
)
from imitlib.experiments.regression import (  # noqa: F401
    ICLRegression,
    icl_regression_artifact,
    icl_regression_config,
    run_icl_regression,
)
from imitlib.experiments.students import (  # noqa: F401
    DARKROOM_STUDENT_CODE,
    DarkRoomStudents,
    darkroom_students_artifact,
    darkroom_students_config,
    optimal_actions,
    run_darkroom_students,
    snapshot_test,
    student_data,
    student_goals,
    student_network,
    students_name,
    teacher_snapshot_returns,
    train_darkroom_students,
)
from imitlib.experiments.tabular import (  # noqa: F401
    LEARNERS,
    TabularExperiment,
    by_learner,
    episodes_to_reach,
    experiment_goals,
    greedy_path,
    mirrored_goal,
    reach_summary,
    run_tabular_experiment,
    showcase_run,
    tabular_artifact,
    tabular_experiment,
)
from imitlib.experiments.teacher import (  # noqa: F401
    LAYER_NAMES,
    RECORD_EVERY,
    TEACHER_CODE,
    TeacherExperiment,
    minatar_histories,
    probe_values,
    random_returns,
    record_minatar,
    run_teacher,
    snapshot_segments,
    teacher_artifact,
    teacher_experiment,
    teacher_network,
    weight_drift,
)
