"""Starting a batch in several processes: ``accelerate launch`` with the right flags.

``flipsketch batch --processes N`` does not re-implement process groups: it runs accelerate's
own launcher (torchrun underneath) on ``flipsketch batch`` with the same options, and every
process finds its rank and device through ``accelerate.PartialState``. On several machines,
``accelerate launch`` with accelerate's own configuration (``accelerate config``:
``num_machines``, ``machine_rank``, ``main_process_ip``) starts the same command on each.
"""

from __future__ import annotations

import os
import socket
import sys

from flipsketch.errors import UsageError


def free_port() -> int:
    """A TCP port no one listens on now, for the processes to meet at."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(args: list[str], processes: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``flipsketch ARGS`` in ``processes`` processes,
    one per GPU, or on the CPU (gloo) where there is no GPU.

    accelerate's ``--cpu`` starts a single process unless MPI is set up; the torchrun launcher
    (``--multi_gpu``) with ``ACCELERATE_USE_CPU`` gives N gloo processes on any machine.
    """
    import torch

    if processes < 1:
        raise UsageError(f"--processes must be at least 1, got {processes}")
    gpus = torch.cuda.device_count()
    if gpus and processes > gpus:
        raise UsageError(f"--processes {processes} but there are {gpus} GPUs; pass at most "
                         f"--processes {gpus} (one process per GPU)")
    env = dict(os.environ)
    if not gpus:
        env["ACCELERATE_USE_CPU"] = "1"
        # The cores shared out, so that N processes do not each start a thread per core.
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", "flipsketch", *args]
    return command, env
