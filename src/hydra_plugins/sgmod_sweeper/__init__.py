"""Hydra sweeper plugin ``hydra/sweeper=sgmod_optuna``: Optuna 5 sweeps with one process per trial."""
