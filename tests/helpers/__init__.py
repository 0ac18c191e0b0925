"""What several test modules share, by concept; a test module imports from here, never from
another test module (fixtures stay in tests/conftest.py).

- ``runs``: the repository's paths, the tiny training preset (conf/debug/tiny.yaml), composing
  the config, ``python src/train.py`` in a subprocess, a GAN run's overrides, TensorBoard events
- ``data``: IDX files, fake and real (the shipped sample) Fashion-MNIST folders
- ``sweeps``: real sweeps of tiny trials through ``src/train.py -m``, and in-process sweeps of
  stub trial scripts (orchestration without training); journals and dead owners
- ``records``: study records and their rows; ``scripts/study.py`` in-process
- ``mounts``: a real tmpfs (full disks, read-only folders), as root or in a mount namespace
- ``processes``: whether a process still runs
- ``slurm``: whether a usable SLURM runs here (else a one-line skip), the launcher overrides of a
  test's worker jobs, the jobs' folders and consoles
"""
