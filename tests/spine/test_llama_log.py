"""The engine keeps what llama.cpp logs while loading, and only the last lines after."""

from __future__ import annotations

from layerlab.core.engine.llama_log import LlamaLog

LOAD = [
    "load_tensors: layer  29 assigned to device CPU, is_swa = 0\n",
    "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB\n",
    "llama_context: flash_attn    = enabled\n",
]


def test_after_the_load_only_the_last_lines_are_kept_and_the_loads_facts_stay():
    echoed: list[str] = []
    log = LlamaLog(echo=echoed.append)
    for line in LOAD:
        log.feed(line)
    log.settle(keep=5)
    for i in range(1000):  # graph reservations of a long day
        log.feed(f"llama_graph_n_input_tensors: input tensor {i}\n")
    assert log.lines[:3] == [line.rstrip("\n") for line in LOAD]
    assert log.lines[3:] == [
        f"llama_graph_n_input_tensors: input tensor {i}" for i in range(995, 1000)
    ]
    assert log.tail(2) == log.lines[-2:]
    assert log.layer_devices() == {29: "CPU"}
    assert log.allocations()["CPU_Mapped"]["weights"] == round(92.10 * 1024 * 1024)
    assert log.context_facts()["flash_attn"] is True
    assert len(echoed) == 1003  # the engine's log file still gets every line
