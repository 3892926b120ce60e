"""Run every test, notebooks included, as on an offline machine.

The notebooks' stored outputs are those of a machine with no ImageNet weights
(see tools/run_notebooks.py). So that `make test` gives the same answer on a
machine that has them cached, the whole session, and the notebook kernels it
starts, get an empty TORCH_HOME. Tests that need ImageNet weights make their
own cache of random weights (tests/conftest.py).
"""

import os
import tempfile

from tests import nbval_tolerance

_EMPTY_TORCH_HOME = tempfile.TemporaryDirectory(prefix="course-torch-home-")


def pytest_configure(config):
    nbval_tolerance.install()  # cells tagged nbval-approx: numbers compared with a stated tolerance
    os.environ["TORCH_HOME"] = _EMPTY_TORCH_HOME.name
