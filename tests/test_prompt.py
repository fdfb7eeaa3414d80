"""The "Speed: N" prompt, the evaluation-side speed setting, and seeded speed dropout."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from robotempo.errors import SpeedSettingError
from robotempo.prompt import SpeedDropout, format_speed_prompt, validate_speed_setting


@pytest.mark.parametrize(
    "speed", [40, np.int64(40), np.int32(40), torch.tensor(40), np.array(40), torch.tensor([40])]
)
def test_prompt_is_an_integer(speed):
    assert format_speed_prompt(speed, False) == "Speed: 40"


def test_prompt_zero_and_padded():
    assert format_speed_prompt(0, torch.tensor(False)) == "Speed: 0"
    assert format_speed_prompt(torch.tensor(40), torch.tensor(True)) == ""
    assert format_speed_prompt(40, np.bool_(True)) == ""


def test_prompt_rejects_non_label():
    with pytest.raises(SpeedSettingError):
        format_speed_prompt(torch.tensor(40.0), False)  # would render "40.0"
    with pytest.raises(SpeedSettingError):
        format_speed_prompt(45, False)


@pytest.mark.parametrize("value", list(range(0, 101, 10)))
def test_valid_settings(value):
    got = validate_speed_setting(value)
    assert got == value and type(got) is int
    assert type(validate_speed_setting(np.int64(value))) is int


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (True, "bool"),
        (False, "bool"),
        (np.bool_(True), "bool"),
        (40.0, "use 40"),
        (40.5, "float"),
        ("40", "str"),
        (None, "NoneType"),
        (-10, "[0, 100]"),
        (110, "[0, 100]"),
        (35, "multiple of 10"),
        (torch.tensor([10, 20]), "single value"),
    ],
)
def test_invalid_settings_are_clear_errors(value, hint):
    with pytest.raises(SpeedSettingError, match="speed must") as info:
        validate_speed_setting(value)
    assert hint in str(info.value)
    assert isinstance(info.value, ValueError)


@given(st.integers(-1000, 1000))
def test_validation_accepts_exactly_the_label_set(value):
    ok = 0 <= value <= 100 and value % 10 == 0
    if ok:
        assert validate_speed_setting(value) == value
    else:
        with pytest.raises(SpeedSettingError):
            validate_speed_setting(value)


def test_dropout_is_a_pure_function_of_seed_index_epoch():
    a, b = SpeedDropout(0.3, seed=7), SpeedDropout(0.3, seed=7)
    idx = np.arange(20_000)
    np.random.seed(1)
    torch.manual_seed(1)
    random.seed(1)
    first = a.drop_many(idx, epoch=2)
    np.random.seed(2)
    torch.manual_seed(2)
    random.seed(2)
    np.testing.assert_array_equal(first, b.drop_many(idx, epoch=2))  # no global RNG involved
    assert [a.drop(int(i), epoch=2) for i in idx[:200]] == first[:200].tolist()  # scalar == batched
    assert abs(first.mean() - 0.3) < 0.02
    assert (first != a.drop_many(idx, epoch=3)).mean() > 0.3  # a new epoch draws anew
    assert (first != SpeedDropout(0.3, seed=8).drop_many(idx, epoch=2)).mean() > 0.3
    assert pickle.loads(pickle.dumps(a)).drop_many(idx[:100], 2).tolist() == first[:100].tolist()


def test_dropout_extremes_and_validation():
    idx = np.arange(1000)
    assert not SpeedDropout(0.0, 1).drop_many(idx).any()
    assert SpeedDropout(1.0, 1).drop_many(idx).all()
    assert SpeedDropout(0.5, -3).drop(5) in (True, False)  # negative seeds are fine
    u = SpeedDropout(0.5, 1).uniforms(idx)
    assert u.min() >= 0.0 and u.max() < 1.0
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(SpeedSettingError):
            SpeedDropout(bad, 0)
    with pytest.raises(SpeedSettingError):
        SpeedDropout(0.5, 1.5)
    # numpy floats are numbers (np.float32(0.1) was refused as "not a number"; QA)
    assert (
        SpeedDropout(np.float32(0.25), 1).drop_many(idx).tolist()
        == SpeedDropout(0.25, 1).drop_many(idx).tolist()
    )
    with pytest.raises(SpeedSettingError, match="integer sample indices"):
        SpeedDropout(0.5, 1).drop_many([1.5])  # was truncated to sample 1
    with pytest.raises(SpeedSettingError, match="epoch must be an int"):
        SpeedDropout(0.5, 1).drop(1, epoch="a")


def test_a_batch_given_to_the_prompt_names_the_argument_at_fault():
    with pytest.raises(SpeedSettingError, match="speed_is_pad must be a single value.*one item's prompt"):
        format_speed_prompt(torch.tensor([40, 50]), torch.tensor([False, False]))
