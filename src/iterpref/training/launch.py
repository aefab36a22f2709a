"""How the train stage runs: one plain process, or `accelerate launch` (DDP, FSDP, DeepSpeed ZeRO-3).

The DVC stage command stays ``python stages/train.py VARIANT``. With ``train.launcher=accelerate``
that process replaces itself (``exec``) by ``accelerate launch --config_file
conf/accelerate/<train.accelerate>.yaml ... stages/train.py VARIANT``; every rank then runs the
same script, sees `inside_launch` true and trains. The accelerate files are accelerate's own
format, so ``accelerate launch --config_file conf/accelerate/zero3.yaml`` works by hand too.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from iterpref.config.fields import spec
from iterpref.config.paths import ROOT

ACCELERATE_DIR = ROOT / "conf" / "accelerate"
LAUNCHERS = ("python", "accelerate")
# accelerate distributed types that CPU processes (gloo) can run: data parallelism, FSDP (once
# `fsdp_on_cpu` has turned the ranks' accelerator into an FSDP one) and DeepSpeed (its CPU accelerator)
CPU_TYPES = ("NO", "MULTI_CPU", "MULTI_GPU", "FSDP", "DEEPSPEED")
# Set in the relaunched command's environment, so its ranks do not relaunch again.
LAUNCHED_ENV = "ITERPREF_LAUNCHED"
# Set by `accelerate launch` in each rank's environment when its config is an FSDP one.
FSDP_ENV = "ACCELERATE_USE_FSDP"


@dataclass
class LaunchConfig:
    """Where and how many processes train (params ``train.launcher`` ... ``train.main_process_port``).

    Attributes:
        launcher: ``python`` (one process, the default) or ``accelerate`` (``accelerate launch``
            with the file named by ``accelerate``).
        accelerate: an accelerate config in ``conf/accelerate/`` (``ddp``, ``fsdp``, ``zero3``) or
            a path to a ``.yaml`` file of your own.
        num_processes: processes in all, over all machines (one per GPU; on CPU, gloo processes).
        num_machines: machines taking part (run the stage on each, with its ``machine_rank``).
        machine_rank: this machine's rank, 0 on the main one.
        main_process_ip: the main machine's address (multi-machine only; null on one machine).
        main_process_port: the rendezvous port on the main machine.
    """

    launcher: Literal["python", "accelerate"] = "python"
    accelerate: Literal["ddp", "fsdp", "zero3"] = "ddp"
    num_processes: int = spec(2, ge=1)
    num_machines: int = spec(1, ge=1)
    machine_rank: int = spec(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int = spec(29500, ge=1, le=65535)

    def __post_init__(self):
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"train.launcher: unknown {self.launcher!r}; expected one of {LAUNCHERS}")
        if self.num_processes < 1 or self.num_machines < 1:
            raise ValueError("train.num_processes and train.num_machines must be >= 1")
        if self.num_processes % self.num_machines:
            raise ValueError(f"train.num_processes={self.num_processes} is not a multiple of "
                             f"train.num_machines={self.num_machines}")

    @property
    def world_size(self) -> int:
        """Processes that share one global batch (1 with the plain python launcher)."""
        return self.num_processes if self.launcher == "accelerate" else 1

    def config_file(self) -> Path:
        """The accelerate config file ``accelerate`` names; an error lists the shipped ones."""
        own = self.accelerate.endswith((".yaml", ".yml"))
        path = Path(self.accelerate) if own else ACCELERATE_DIR / f"{self.accelerate}.yaml"
        if not path.is_file():
            shipped = sorted(p.stem for p in ACCELERATE_DIR.glob("*.yaml"))
            raise FileNotFoundError(f"train.accelerate={self.accelerate!r}: no file {path}; shipped: {shipped}")
        return path


def inside_launch() -> bool:
    """Whether this process is already one of the launched ranks."""
    return os.environ.get(LAUNCHED_ENV) == "1"


def accelerate_command(cfg: LaunchConfig, script_argv: list[str]) -> list[str]:
    """The ``accelerate launch`` command line that runs ``script_argv`` (script path and arguments)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(cfg.config_file()),
           "--num_processes", str(cfg.num_processes), "--num_machines", str(cfg.num_machines),
           "--machine_rank", str(cfg.machine_rank), "--main_process_port", str(cfg.main_process_port)]
    if cfg.main_process_ip:
        cmd += ["--main_process_ip", cfg.main_process_ip]
    return cmd + list(script_argv)


def relaunch_if_needed(cfg: LaunchConfig, script_argv: list[str], use_cpu: bool) -> None:
    """Replace this process by ``accelerate launch`` when the launcher asks for it; else return.

    ``exec`` rather than a child process: signals (Ctrl-C, DVC stopping the stage) reach
    accelerate's launcher, which stops its ranks. On CPU, DDP, FSDP and DeepSpeed run over gloo;
    any other kind (TPU, Megatron-LM) would quietly run as DDP there, so that is an error here.
    """
    if cfg.launcher == "python" or inside_launch():
        return
    kind = yaml.safe_load(cfg.config_file().read_text()).get("distributed_type")
    if use_cpu and kind not in CPU_TYPES:
        raise ValueError(f"train.accelerate={cfg.accelerate!r} ({kind}) needs GPUs; on CPU accelerate would "
                         f"run it as plain DDP. On CPU use train.accelerate=ddp, fsdp or zero3.")
    cmd = accelerate_command(cfg, script_argv)
    print("launching:", " ".join(cmd), flush=True)
    os.execve(sys.executable, cmd, {**os.environ, LAUNCHED_ENV: "1"})


def fsdp_launched() -> bool:
    """Whether this rank was started by ``accelerate launch`` with an FSDP config."""
    return os.environ.get(FSDP_ENV, "false").lower() == "true"


def distributed_kind(state) -> str:
    """How the ranks share the work (an accelerate ``DistributedType`` name). Before the
    accelerator exists, accelerate's ``PartialState`` calls an FSDP launch MULTI_GPU or MULTI_CPU;
    this names it FSDP."""
    return "FSDP" if fsdp_launched() else state.distributed_type.value


def fsdp_on_cpu(accelerator) -> bool:
    """Make a CPU accelerator of an FSDP launch an FSDP one; True when it did.

    accelerate (1.15) turns an FSDP launch into FSDP only on GPU-like devices: on CPU ranks its
    state stays MULTI_CPU and ``prepare`` would wrap the model in DDP. PyTorch's FSDP shards over
    gloo on CPU as well, so the state gets the FSDP type and the plugin that accelerate reads from
    the launcher's ``FSDP_*`` variables; from then on accelerate and the Trainer take their FSDP
    paths (sharded wrapping, full state dict on save).
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    if not fsdp_launched() or state.distributed_type != DistributedType.MULTI_CPU:
        return False
    state.fsdp_plugin = FullyShardedDataParallelPlugin()
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return True


def threads_per_rank(threads: int) -> int:
    """Torch threads for one rank: ``runtime.threads`` shared by the ranks on this machine."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, threads // local)
