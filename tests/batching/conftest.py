"""One engine decoding four answers together, shared by each module's tests."""

from __future__ import annotations

import pytest

from layerlab.core.load_plan import LoadPlan
from tests.spine.engine_helpers import load

N_CTX = 1024
PARALLEL = 4


@pytest.fixture(scope="module")
def engine(demo_model):
    # flash attention on, as every load the person makes has it (planner, default_plan)
    plan = LoadPlan(str(demo_model), n_ctx=N_CTX, n_threads=2, parallel=PARALLEL, flash_attn=True)
    sup, ready = load(plan)
    yield sup, ready
    sup.stop()
