"""The VM tier runs only when asked for by mark (`-m vm`): it boots a guest and takes minutes,
so `pytest tests` (the host tiers) leaves it out: deselected, not skipped."""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "vm" in (config.option.markexpr or ""):
        return
    vm = [item for item in items if item.get_closest_marker("vm")]
    if vm:
        config.hook.pytest_deselected(items=vm)
        items[:] = [item for item in items if not item.get_closest_marker("vm")]
