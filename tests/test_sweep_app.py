"""The Hydra sweep app's pieces that need no DVC run: which overrides reach DVC, how a job's
metric is found in `dvc exp show --json` and read, and that the shipped launcher and sweeper
configs compose with the installed plugins."""

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from iterpref import params as P
from iterpref import sweep

EXP_SHOW = [
    {"rev": "workspace", "name": None, "data": {"metrics": {}}, "experiments": None},
    {"rev": "abc", "name": "main", "data": {"metrics": {}},
     "experiments": [{"name": "grid-0", "revs": [{"rev": "def", "name": "grid-0", "experiments": None,
                                                  "data": {"metrics": {"reports/metrics.json": {"data": {
                                                      "reference": {"humaneval": 5.5},
                                                      "dpo": {"humaneval": 6.1, "mbpp": 3.6, "average": 4.85}}}}}}]}]},
]


def test_only_pipeline_overrides_reach_dvc():
    task = ["experiment=smoke", "sweep.metric=dpo.average", "train.common.beta=0.05", "+sweep.x=1",
            "train.run=[dpo]", "sweeper_note=1"]
    assert sweep.dvc_overrides(task) == ["experiment=smoke", "train.common.beta=0.05", "train.run=[dpo]",
                                         "sweeper_note=1"]
    cmd = sweep.dvc_command("grid-0", ["experiment=smoke", "train.run=[dpo]"], ["--pull"])
    assert cmd[-7:] == ["-n", "grid-0", "--pull", "-S", "experiment=smoke", "-S", "train.run=[dpo]"]
    assert "--temp" in cmd and "--wait-for-lock" in cmd


def test_metric_of_an_experiment():
    data = sweep.find_experiment(EXP_SHOW, "grid-0")
    metrics = data["metrics"]["reports/metrics.json"]["data"]
    assert sweep.lookup(metrics, "dpo.average") == 4.85
    with pytest.raises(KeyError, match=r"no 'target_dpo' under the top level; keys there: \['dpo', 'reference'\]"):
        sweep.lookup(metrics, "target_dpo.average")
    with pytest.raises(KeyError, match="no 'avg' under dpo"):
        sweep.lookup(metrics, "dpo.avg")
    with pytest.raises(KeyError, match="no experiment named 'grid-9'"):
        sweep.find_experiment(EXP_SHOW, "grid-9")


@pytest.mark.parametrize("overrides, target", [
    ([], "hydra._internal.core_plugins.basic_launcher.BasicLauncher"),
    (["hydra/launcher=submitit_local"], "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"),
    (["hydra/launcher=slurm"], "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
])
def test_launcher_configs_compose(overrides, target):
    with initialize_config_dir(config_dir=str(P.ROOT / "conf"), version_base="1.3"):
        cfg = compose("sweep", overrides=overrides + ["experiment=smoke"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target
    assert cfg.model.name == "tiny-random"  # the pipeline's own config, experiment applied
    assert OmegaConf.select(cfg, "sweep.metric") is None
    if overrides == ["hydra/launcher=slurm"]:
        assert (cfg.hydra.launcher.gpus_per_node, cfg.hydra.launcher.timeout_min) == (1, 720)


def test_optuna_sweeper_config_maximises():
    with initialize_config_dir(config_dir=str(P.ROOT / "conf"), version_base="1.3"):
        cfg = compose("sweep", overrides=["hydra/sweeper=maximize"], return_hydra_config=True)
    assert cfg.hydra.sweeper.direction == "maximize" and cfg.hydra.sweeper.sampler.seed == 0
    assert "optuna" in cfg.hydra.sweeper._target_
