"""The signals that stop a run: a job's main process checkpoints on them (train.preempt), its
data-loading workers ignore them. No torch here: the config checks import train.preempt."""

from __future__ import annotations

import signal

# SIGUSR2 is submitit's own preemption signal (`--signal=USR2@<signal_delay_s>`): the run writes its
# checkpoint first, then hands the signal to submitit, which requeues the job.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
                if hasattr(signal, name))


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """In a data-loading worker: Ctrl-C and SLURM's time-limit signals reach every process of
    the job, and a worker killed by one would fail the main process's step before it can write
    its checkpoint. SIGTERM keeps its default: the DataLoader and multiprocessing stop workers
    with it, and a worker that ignored it would hang the process at exit."""
    for signum in SIGNALS:
        if signum != signal.SIGTERM:
            signal.signal(signum, signal.SIG_IGN)
