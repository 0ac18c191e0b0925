"""One run: training (train.py), evaluation (eval.py), what a run logs and records (diagnostics),
its pruning callback, its stops on signals (interrupts), resuming, its console and command-line
helpers."""
