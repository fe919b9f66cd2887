"""The layer contracts of ``[tool.importlinter]`` (pyproject.toml) hold, and they bite.

``lint-imports`` checks which package may import which: the layers (errors < ssm < aws <
nodes < exec < jobs, store < config < app < cli), the sandbox kept out of the library and
built on the pure SSM modules only, and boto3/botocore, click/rich and websockets each
confined to their package. The second test injects wrong-way imports into a copy of the
source tree and expects the named contract to break.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"
LAYERS = "Layers: each package imports only the ones below it"
SANDBOX_PRIVATE = "Only the CLI starts the sandbox: the library never imports ecsexec.sandbox"
SANDBOX_BASE = "The sandbox is built on errors and the pure SSM protocol modules only"
BOTO = "boto3/botocore only in ecsexec.aws (and the sandbox's model and signature checks)"
TERMINAL = "click and rich only in ecsexec.cli"
WEBSOCKETS = "websockets only in ecsexec.ssm"


def lint_imports(config: Path, src: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the package under ``src`` with the contracts in ``config``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
        "COLUMNS": "300",  # one line per contract name
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo", str(config)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT / "pyproject.toml", ROOT / "src")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for name in (LAYERS, SANDBOX_PRIVATE, SANDBOX_BASE, BOTO, TERMINAL, WEBSOCKETS):
        assert f"{name} KEPT" in output


@pytest.mark.parametrize(
    ("module", "line", "contract", "link"),
    [
        ("ssm/frames.py", "import ecsexec.cli", LAYERS, "ecsexec.ssm.frames -> ecsexec.cli"),
        ("aws/credentials.py", "from ecsexec import config", LAYERS, "-> ecsexec.config"),
        ("nodes/node.py", "import ecsexec.exec.wrap", LAYERS, "-> ecsexec.exec.wrap"),
        ("nodes/node.py", "import ecsexec.sandbox", SANDBOX_PRIVATE, "ecsexec.nodes.node"),
        ("sandbox/hub.py", "import ecsexec.ssm.session", SANDBOX_BASE, "ecsexec.ssm.session"),
        ("sandbox/state.py", "import ecsexec.cli.sandbox", SANDBOX_BASE, "ecsexec.cli"),
        ("exec/wrap.py", "import botocore", BOTO, "ecsexec.exec.wrap -> botocore"),
        ("nodes/filter.py", "import rich", TERMINAL, "ecsexec.nodes.filter -> rich"),
        ("jobs/model.py", "import websockets", WEBSOCKETS, "ecsexec.jobs.model -> websockets"),
    ],
)
def test_a_wrong_way_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str, link: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "ecsexec",
        src / "ecsexec",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    config = tmp_path / "pyproject.toml"
    shutil.copyfile(ROOT / "pyproject.toml", config)
    target = src / "ecsexec" / module
    target.write_text(target.read_text() + f"\n{line}  # injected: the wrong way\n")

    result = lint_imports(config, src)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"{contract} BROKEN" in output
    assert link in output  # the copy is what was checked
