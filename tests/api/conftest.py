"""One engine and one `serve` for the whole of tests/api (every test that takes `api` runs on
both; pytest runs all of one before starting the other), spoken to with the real `openai`
client."""

from __future__ import annotations

from dataclasses import dataclass

import openai
import pytest

from layerlab.core.load_plan import LoadPlan
from tests.spine.engine_helpers import load
from tests.spine.test_serve import KEY, start_serve, stop

N_CTX = 1024


@dataclass
class Api:
    """Where an OpenAI client points: the engine itself, or `serve` in front of a head."""

    name: str
    base: str  # http://host:port (no /v1)
    key: str
    model: str

    def client(self, **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=self.key, max_retries=0, **kwargs)

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}


# package scope: shared by tests/api alone, and gone before other folders count engines
@pytest.fixture(scope="package", params=["engine", "serve"])
def api(request, demo_model):
    if request.param == "engine":
        sup, ready = load(LoadPlan(str(demo_model), n_ctx=N_CTX, n_threads=2))
        yield Api("engine", ready.url, sup.token, ready.model)
        sup.stop()
    else:
        proc, base = start_serve("--ctx", str(N_CTX))
        import httpx

        model = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
        yield Api("serve", base, KEY, model["data"][0]["id"])
        stop(proc)
