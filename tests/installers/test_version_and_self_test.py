"""`layerlab --version` and `--self-test` as a person (or a smoke test) runs them, and how the
backend modules of an installer's llama.cpp are recognised."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from layerlab import __version__
from layerlab.core.build_info import BuildInfo, module_names

LAYERLAB = [sys.executable, "-m", "layerlab.cli.main"]


def test_version_names_the_app_llama_cpp_its_rpc_protocol_and_backends():
    out = subprocess.run([*LAYERLAB, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"LayerLab {__version__}"
    assert lines[1] == "llama.cpp 0c1e570 (llama-cpp-python 0.3.36), RPC protocol 7.0.0"
    assert lines[2] == "backends: built in (CPU, RPC)"  # the development build


def test_self_test_answers_on_the_demo_model_through_the_engine_and_exits_0():
    out = subprocess.run([*LAYERLAB, "--self-test"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    said = out.stdout
    assert said.startswith(f"LayerLab {__version__}\n")
    assert "self-test: llama.cpp registered: RPC, CPU" in said
    assert "self-test: device CPU: " in said
    assert "self-test: loaded in " in said and "CPU: layers 0-29 + output" in said
    (answer,) = [ln for ln in said.splitlines() if ln.startswith("self-test: answer in ")]
    assert answer.split(": ", 2)[2].removeprefix("The capital of France is").strip()
    assert said.rstrip().endswith("self-test: passed")


def test_self_test_on_a_device_that_is_not_there_fails_in_words(capsys):
    from layerlab.cli.self_test import run_self_test

    assert run_self_test(device="Vulkan7", timeout=120) == 1
    said = capsys.readouterr().out
    assert "has no device named 'Vulkan7'" in said and "Traceback" not in said


def touch(directory: Path, *names: str) -> Path:
    directory.mkdir()
    for n in names:
        (directory / n).write_bytes(b"")
    return directory


def test_a_module_build_is_told_by_its_cpu_variants(tmp_path):
    linux = touch(
        tmp_path / "linux",
        "libllama.so.0", "libggml.so.0", "libggml-base.so.0", "libggml-cpu-haswell.so",
        "libggml-cpu-skylakex.so", "libggml-cpu-x64.so", "libggml-rpc.so", "libggml-vulkan.so",
    )  # fmt: skip
    assert module_names(linux) == ["cpu-haswell", "cpu-skylakex", "cpu-x64", "rpc", "vulkan"]
    windows = touch(
        tmp_path / "windows",
        "llama.dll", "ggml.dll", "ggml-base.dll", "ggml-cpu-alderlake.dll", "ggml-cuda.dll",
    )  # fmt: skip
    assert module_names(windows) == ["cpu-alderlake", "cuda"]
    built_in = touch(tmp_path / "dev", "libggml-cpu.so", "libggml-cpu.so.0", "libggml-rpc.so.0")
    assert module_names(built_in) == []
    assert module_names(tmp_path / "absent") == []


def test_backends_in_words():
    def info(modules: list[str]) -> BuildInfo:
        return BuildInfo("0.1.0", "0.3.36", "0c1e570", "7.0.0", modules, frozen=True)

    mods = [f"cpu-{v}" for v in ("haswell", "x64", "zen4")] + ["rpc", "vulkan"]
    assert info(mods).backends_text() == "CPU (3 variants), RPC, Vulkan"
    assert info(["cpu-x64", "cuda"]).backends_text() == "CPU, CUDA"
    assert info([]).backends_text() == "built in (CPU, RPC)"
