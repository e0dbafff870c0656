"""The environment switches that turn an optimisation or a guard off (ferrovent._switches): the words that mean
off, in any case and with spaces around them, and everything else leaving the switch on."""

from __future__ import annotations

import pytest
from ferrovent._switches import switched_off

VARIABLE = "FERROVENT_TEST_SWITCH"


@pytest.mark.parametrize("value", ["0", "false", "no", "off", " OFF ", "False", "No\n"])
def test_these_words_switch_off(monkeypatch, value):
    monkeypatch.setenv(VARIABLE, value)
    assert switched_off(VARIABLE)


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "", "2", "disabled"])
def test_any_other_value_leaves_the_switch_on(monkeypatch, value):
    monkeypatch.setenv(VARIABLE, value)
    assert not switched_off(VARIABLE)


def test_no_variable_leaves_the_switch_on(monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    assert not switched_off(VARIABLE)
