"""What runs in production imports without the test extra (pytest, hypothesis, httpx).

`pip install -e .` + `memberhub demo` must work: the demo seeds through the connectors' fakes,
which live in ``connectors.testing`` beside the kit — and only the kit may need pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

_PROBE = textwrap.dedent(
    """
    import builtins
    real = builtins.__import__
    def guarded(name, *args, **kwargs):
        if name.split(".")[0] in ("pytest", "_pytest", "hypothesis", "httpx"):
            raise ImportError(f"{name} is a test-only dependency")
        return real(name, *args, **kwargs)
    builtins.__import__ = guarded

    import connectors.demo, gateway.app, gateway.cli, gateway.demo
    from connectors.testing import FakePlatform, Faults, Harness, World
    from gateway.sync.registry import load_connectors
    assert len(load_connectors().names()) >= 6
    print("ok")
    """
)


def test_production_code_imports_without_test_dependencies() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
