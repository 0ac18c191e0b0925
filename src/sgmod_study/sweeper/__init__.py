"""Optuna sweeps in which every trial is a fresh ``python src/train.py`` process.

One module per concept, so that the scheduler is tested with a stub trial script and nothing
here is imported by a training run (it needs only ``sgmod_study.trial_contract``):

- ``space``: the search space in hydra-optuna-sweeper's reading of Hydra's sweep grammar
- ``settings``: the sweeper's settings and their checks
- ``storage``: the study's storage (journal file or database URL) and the study itself
- ``fixed_setup``: what every trial of a study shares, recorded and checked
- ``devices``: which GPUs each trial slot gets
- ``processes`` and ``guard``: a trial's process tree, started and ended as a whole
- ``liveness``: heartbeats, and the trials of workers that are gone
- ``scheduler``: the ``Sweep`` that runs the trials
- ``results``: trials.csv, best.json, importances and plots
- ``samplers``: this sweeper's grid sampler

Why not hydra-optuna-sweeper: its PyPI release pins optuna < 3 (whose RDB storage fails with
SQLAlchemy 2), runs trials in the sweeper's process (no pruning, DDP relaunches the whole sweep,
one crash ends the sweep) and waits for a whole batch of n_jobs trials before starting the next.
"""
