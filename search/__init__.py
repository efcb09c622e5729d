"""mobilenas.search: find an architecture under a latency target (MnasNet's search).

Nothing is imported here, so that ``nas-search --help`` does not pay for torch or Ray; import
the modules themselves.

:mod:`.base`           the seams: :class:`Proposal`, :class:`Observation`, the ask/tell
                       :class:`Strategy` contract (with ``state_dict``), :class:`Evaluator`.
:mod:`.rewards`        MnasNet's ``ACC x (LAT/T)^w`` (``soft``, ``hard``, ``custom``) and TuNAS's
                       absolute reward, pure functions returning a breakdown; :class:`RewardSpec`.
:mod:`.strategies`     ``ppo`` (MnasNet's LSTM controller), ``reinforce``, ``evolution``,
                       ``random``, ``tpe`` and ``nsga2`` (Optuna); ``make_strategy``; a strategy of
                       one's own as ``FILE.py:CLASS`` or ``MODULE:CLASS``.
:mod:`.contract`       the rules every strategy keeps, as a pytest class to inherit.
:mod:`.wrappers`       de-duplication, the hard latency filter, failure handling.
:mod:`.problems`       what is searched: a network space with a latency table, or the NAS-Bench-201
                       cell space with a tabular benchmark (:mod:`.tabular`).
:mod:`.orchestrator`   :class:`SearchRun`: the run directory (manifest, event journal, strategy
                       checkpoints, ``trials.csv``, ``pareto.csv``, ``best.json``) and resume.
:mod:`.journal`        the journal's replay rules that nas-results shares (``void_before``).
:mod:`.proxy`, :mod:`.tune_driver`, :mod:`.execution`
                       proxy trainings on Ray Tune (or in-process), a local Ray on 127.0.0.1 or
                       ``--ray-address``; :mod:`.pareto` fronts and hypervolume.
:mod:`.cli`            ``nas-search`` (= ``mobilenas search``).
"""
