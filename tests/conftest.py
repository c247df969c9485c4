"""Shared pytest setup: softgrad's sweep options and the benchmark plugin."""

import pytest

from softgrad import timing


def pytest_addoption(parser):
    timing.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # Plain `pytest` runs each benchmark once, untimed, as a smoke test.
    if not timing.timing_requested(config):
        config.option.benchmark_disable = True
    config.pluginmanager.register(timing.SweepPlugin(config), "softgrad-sweep")
