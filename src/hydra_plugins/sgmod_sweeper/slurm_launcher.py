"""hydra-submitit-launcher's SLURM launcher, waiting on its jobs through squeue rather than sacct
(``sgmod_study.sweeper.slurm_jobs`` says why). ``conf/hydra/launcher/slurm.yaml`` selects it."""

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher


class SgmodSlurmLauncher(SlurmLauncher):
    consoles: list = []  # after launch: (job id, stdout file, stderr file) of each job, in its workers' order

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from sgmod_study.sweeper.slurm_jobs import watched_by_squeue

        with watched_by_squeue() as consoles:
            returns = super().launch(job_overrides, initial_job_idx)
        self.consoles = consoles
        return returns
