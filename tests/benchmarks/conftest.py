"""Parametrizes each benchmark module over the cases of its family."""

import pytest


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        plugin = metafunc.config.pluginmanager.get_plugin("softgrad-sweep")
        cases = plugin.cases_for(metafunc.module.FAMILY)
        metafunc.parametrize("case", cases, ids=[case.id for case in cases])


@pytest.fixture
def sweep(request):
    return request.config.pluginmanager.get_plugin("softgrad-sweep")
