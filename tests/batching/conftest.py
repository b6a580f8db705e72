"""One engine decoding four answers together, shared by each module's tests."""

from __future__ import annotations

import pytest

from layerlab.core.load_plan import LoadPlan
from tests.spine.engine_helpers import load

N_CTX = 1024
PARALLEL = 4


@pytest.fixture(scope="module")
def engine(demo_model):
    sup, ready = load(LoadPlan(str(demo_model), n_ctx=N_CTX, n_threads=2, parallel=PARALLEL))
    yield sup, ready
    sup.stop()
