"""Distributions: every package builds its own wheel at its own version, and one connector installs alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_repo, scaffold_alone

from tools import check_dist, structure
from tools.new_connector import scaffold
from tools.release import set_version
from tools.repo import Package, connector_names, packages


def uv() -> str:
    return os.environ.get("UV", "uv")


def build(pkg: Package, out: Path) -> None:
    subprocess.run([uv(), "build", "--quiet", "--no-create-gitignore", "--out-dir", str(out), str(pkg.path)],
                   check=True, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A copy of the repository with one connector at version 7.3.1, and every package built into dist/."""
    tmp = tmp_path_factory.mktemp("built")
    root = copy_repo(tmp / "repo", minimum_connectors=2)
    if installable_connector(root) is None:  # before the real connectors are complete, a scaffolded one stands in
        scaffold("standin", root)
    bumped = installable_connector(root)
    assert bumped is not None
    pyproject = root / "connectors" / bumped / "pyproject.toml"
    pyproject.write_text(set_version(pyproject.read_text(), "7.3.1"))
    dist = tmp / "dist"
    for pkg in packages(root):
        build(pkg, dist)
    return root, dist, bumped


def test_every_package_builds_a_wheel_at_its_own_version(built: tuple[Path, Path, str]) -> None:
    root, dist, bumped = built
    assert check_dist.check(dist, root, expect=[p.name for p in packages(root)]) == []
    wheels = {w.name.split("-")[0]: w.name.split("-")[1] for w in dist.glob("*.whl")}
    assert wheels == {f"flyteconnectors_{p.name}": p.version for p in packages(root)}
    assert len(wheels) >= 3
    assert wheels[f"flyteconnectors_{bumped}"] == "7.3.1"
    assert "7.3.1" not in {v for name, v in wheels.items() if name != f"flyteconnectors_{bumped}"}


def test_wheel_check_refuses_a_wheel_holding_another_portion(tmp_path: Path) -> None:
    import zipfile

    root = copy_repo(tmp_path / "repo", minimum_connectors=1)
    pkg = packages(root)[1]
    stem = f"flyteconnectors_{pkg.name}-{pkg.version}"
    wheel = tmp_path / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"flyteconnectors/{pkg.name}/connector.py", "")
        zf.writestr("flyteconnectors/__init__.py", "")
        zf.writestr("flyteconnectors/core/registry.py", "")
        zf.writestr(f"{stem}.dist-info/METADATA", f"Name: {pkg.distribution}\nVersion: {pkg.version}\n")
    problems = check_dist.wheel_problems(wheel, pkg)
    assert any("flyteconnectors/__init__.py" in p for p in problems)
    assert any("flyteconnectors/core/registry.py" in p for p in problems)


def installable_connector(root: Path) -> str | None:
    """The first connector that follows every structure rule (an unfinished one cannot be installed)."""
    return next((n for n in connector_names(root) if not structure.check(root / "connectors" / n)), None)


def test_one_connector_wheel_pulls_in_core_and_no_other_connector(built: tuple[Path, Path, str],
                                                                  tmp_path: Path) -> None:
    root, dist, name = built  # every wheel is in dist/: the resolver must still take only what the one needs
    venv = tmp_path / "venv"
    env = dict(os.environ, UV_COMPILE_BYTECODE="0")
    subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    wheel = next(dist.glob(f"flyteconnectors_{name}-*.whl"))
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", str(python), "--find-links", str(dist),
                    str(wheel)], check=True, env=env, timeout=600)

    listed = subprocess.run([uv(), "pip", "list", "--python", str(python), "--format", "freeze"],
                            check=True, capture_output=True, text=True).stdout
    ours = sorted(line.split("==")[0] for line in listed.splitlines() if line.startswith("flyteconnectors"))
    assert ours == sorted(["flyteconnectors-core", f"flyteconnectors-{name}"])
    assert f"flyteconnectors-core=={packages(root)[0].version}" in listed.splitlines()

    result = subprocess.run([str(venv / "bin" / "flyteconnectors"), "list"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    packages_listed = [line.split(" ")[0] for line in result.stdout.splitlines() if line and not line[0].isspace()]
    assert packages_listed == [name], result.stdout


@pytest.mark.parametrize("pkg", packages(), ids=[p.name for p in packages()])
def test_wheel_target_is_the_namespace_folder(pkg: Package) -> None:
    wheel = pkg.pyproject.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {}).get("wheel", {})
    assert wheel.get("packages") == ["src/flyteconnectors"], (
        f"{pkg.name}: [tool.hatch.build.targets.wheel] packages must be ['src/flyteconnectors'] so the wheel holds "
        "flyteconnectors/<name>/ and no __init__.py above it")


def test_connector_needing_a_newer_core_is_refused_and_listed(built: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, dist, _ = built
    core_wheel = next(dist.glob("flyteconnectors_core-*.whl"))
    scaffold_alone(tmp_path, "future")
    pyproject = tmp_path / "connectors" / "future" / "pyproject.toml"
    text, count = re.subn(r'^dependencies = \["flyteconnectors-core>=[^"]*"\]',
                          'dependencies = ["flyteconnectors-core>=99.0.0"]', pyproject.read_text(), flags=re.MULTILINE)
    assert count == 1
    pyproject.write_text(text)
    future = tmp_path / "future-dist"
    build(Package("future", tmp_path / "connectors" / "future"), future)
    venv = tmp_path / "venv"
    env = dict(os.environ, UV_COMPILE_BYTECODE="0")
    subprocess.run([uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env)
    python = str(venv / "bin" / "python")
    subprocess.run([uv(), "pip", "install", "--quiet", "--python", python, str(core_wheel)], check=True, env=env)
    # pip would refuse the install; --no-deps stands for an environment that drifted (an upgrade of one side)
    subprocess.run([uv(), "pip", "install", "--quiet", "--no-deps", "--python", python,
                    *map(str, future.glob("*.whl"))], check=True, env=env)

    result = subprocess.run([str(venv / "bin" / "flyteconnectors"), "list"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "future" in result.stdout and "NOT LOADED" in result.stdout
    assert "needs flyteconnectors-core>=99.0.0" in result.stdout
