"""Process identity without a process group: from the launcher's environment, else a lone process."""

from __future__ import annotations

import pytest

from robotempo.distributed import barrier, has_process_group, process_info

LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")


@pytest.fixture
def clean_env(monkeypatch):
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_alone(clean_env):
    info = process_info()
    assert (info.rank, info.local_rank, info.world_size) == (0, 0, 1) and info.is_global_main
    assert not has_process_group()
    barrier()  # no group: returns at once


def test_torchrun_variables(clean_env):
    for k, v in {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}.items():
        clean_env.setenv(k, v)
    info = process_info()
    assert (info.rank, info.local_rank, info.world_size) == (3, 1, 4)
    assert not info.is_global_main and not info.is_local_main


def test_slurm_variables(clean_env):
    for k, v in {"SLURM_PROCID": "2", "SLURM_LOCALID": "0", "SLURM_NTASKS": "8"}.items():
        clean_env.setenv(k, v)
    info = process_info()
    assert (info.rank, info.local_rank, info.world_size) == (2, 0, 8) and info.is_local_main


@pytest.mark.parametrize(
    "name, value", [("RANK", "zero"), ("RANK", "1.0"), ("WORLD_SIZE", "2x"), ("SLURM_PROCID", "a")]
)
def test_a_variable_that_is_not_an_integer_is_a_config_error(clean_env, name, value):
    """It was taken for the default: a rank "1.0" drew rank 0's samples, every sample twice, half never."""
    from robotempo.errors import ConfigError

    clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name}='{value}' is not an integer"):
        process_info()
    clean_env.setenv(name, " ")  # blank: unset
    assert process_info().rank == 0
