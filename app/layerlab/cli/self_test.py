"""`layerlab --self-test`: the check every installer's smoke test runs.

Prints the versions and the backends this LayerLab carries, asks llama.cpp (in a child
process, as the window does) which backends and devices it finds, loads the bundled demo
model on the best of them through the real engine process, generates a few tokens and
exits 0; anything else exits 1 with the reason in words.
"""

from __future__ import annotations

import sys
import time

SELF_TEST_PROMPT = "The capital of France is"
SELF_TEST_TOKENS = 8


def _say(text: str) -> None:
    print(f"self-test: {text}", flush=True)


def run_self_test(device: str | None = None, timeout: float = 300.0) -> int:
    """`device` forces a ggml device ('CPU', 'Vulkan0'); None: the best one found."""
    from layerlab.core.build_info import build_info, read_runtime, version_text
    from layerlab.core.demo_model import DEMO_NAME, DemoModelMissing, demo_model_path
    from layerlab.core.engine.client import EngineRefused, EngineUnavailable
    from layerlab.core.engine.supervisor import Failed, Ready
    from layerlab.core.head import Head
    from layerlab.core.load_plan import DeviceRef, LoadPlan

    print(version_text(build_info()), flush=True)
    runtime = read_runtime()
    if runtime.problem:
        _say(runtime.problem)
        return 1
    _say(f"llama.cpp registered: {', '.join(runtime.backends) or 'no backend'}")
    for line in runtime.device_lines():
        _say(f"device {line}")
    best = runtime.best_device() if device is None else ("" if device == "CPU" else device)
    try:
        model = demo_model_path()
    except DemoModelMissing as e:
        _say(str(e))
        return 1
    plan = LoadPlan(
        str(model),
        model_name=DEMO_NAME,
        n_ctx=512,
        devices=[DeviceRef.local(best)] if best else [],
    )
    _say(f"loading the demo model on {best or 'the CPU'}…")
    head = Head(persist=False)
    try:
        t0 = time.perf_counter()
        head.load(plan)
        state = head.supervisor.wait_for((Ready, Failed), timeout)
        if not isinstance(state, Ready):
            _say(getattr(state, "message", "") or f"the model did not load within {timeout:g} s")
            return 1
        _say(f"loaded in {time.perf_counter() - t0:.1f} s: {state.placement_text}")
        client = head.client()
        if client is None:
            _say("the engine went away after loading")
            return 1
        pieces: list[str] = []
        t1 = time.perf_counter()
        for ev in client.stream_completion(
            SELF_TEST_PROMPT, max_tokens=SELF_TEST_TOKENS, temperature=0.0
        ):
            text = getattr(ev, "text", None)
            if text:
                pieces.append(text)
        answer = "".join(pieces)
        if not answer.strip():
            _say("the model answered nothing")
            return 1
        _say(f"answer in {time.perf_counter() - t1:.2f} s: {SELF_TEST_PROMPT}{answer}")
        _say("passed")
        return 0
    except (EngineRefused, EngineUnavailable) as e:
        _say(str(e))
        state = head.supervisor.state
        if isinstance(state, Failed) and state.message:
            _say(state.message)  # why it stopped, as the head heard it
        return 1
    finally:
        head.close()


if __name__ == "__main__":
    sys.exit(run_self_test())
