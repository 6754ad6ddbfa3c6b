"""environment.yml (conda) and pyproject.toml (pip) must describe the same environment.

Both list the runtime dependencies; students use either. This test reads the two files
(PyYAML and tomllib, not our own parser) and checks that they name the same packages
(conda's ``pytorch`` is pip's ``torch``) with the same lower bounds, that the Python
bounds agree, and that conda's pip section installs this package with its test extra.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]

#: conda-forge name -> PyPI name, where they differ.
CONDA_TO_PIP = {"pytorch": "torch"}

#: conda entries that are not Python packages of the project.
CONDA_ONLY = {"python", "pip"}


@pytest.fixture(scope="module")
def conda() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text())


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def parse_conda_spec(spec: str) -> tuple[str, SpecifierSet]:
    """'pytorch>=2.3' -> ('torch', SpecifierSet('>=2.3')), with the PyPI name."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*", spec)
    assert match, f"environment.yml: cannot read the dependency {spec!r}"
    name, version = match.groups()
    try:
        specifier = SpecifierSet(version)
    except Exception:  # conda-only syntax such as 'pytorch=2.3' has no pip meaning
        pytest.fail(f"environment.yml: use pip-compatible bounds such as 'name>=1.0', not {spec!r}")
    name = canonicalize_name(name)
    return CONDA_TO_PIP.get(name, name), specifier


def lower_bound(specifier: SpecifierSet) -> Version | None:
    bounds = [Version(s.version) for s in specifier if s.operator == ">="]
    return max(bounds) if bounds else None


def conda_packages(conda: dict) -> dict[str, SpecifierSet]:
    specs = [entry for entry in conda["dependencies"] if isinstance(entry, str)]
    return dict(parse_conda_spec(spec) for spec in specs)


def pip_packages(pyproject: dict) -> dict[str, SpecifierSet]:
    requirements = [Requirement(line) for line in pyproject["project"]["dependencies"]]
    return {canonicalize_name(r.name): r.specifier for r in requirements}


def pip_section(conda: dict) -> list[str]:
    sections = [entry["pip"] for entry in conda["dependencies"] if isinstance(entry, dict) and "pip" in entry]
    assert len(sections) == 1, "environment.yml needs exactly one `- pip:` section"
    return sections[0]


def test_conda_uses_conda_forge(conda):
    assert conda["channels"] == ["conda-forge"]


def test_same_packages(conda, pyproject):
    in_conda = set(conda_packages(conda)) - CONDA_ONLY
    in_pip = set(pip_packages(pyproject))
    assert in_conda - in_pip == set(), "in environment.yml but not in pyproject.toml [project.dependencies]"
    assert in_pip - in_conda == set(), "in pyproject.toml [project.dependencies] but not in environment.yml"


def test_same_lower_bounds(conda, pyproject):
    from_conda, from_pip = conda_packages(conda), pip_packages(pyproject)
    differ = {
        name: (str(from_conda[name]), str(from_pip[name]))
        for name in set(from_conda) & set(from_pip)
        if None not in (lower_bound(from_conda[name]), lower_bound(from_pip[name]))
        and lower_bound(from_conda[name]) != lower_bound(from_pip[name])
    }
    assert differ == {}, "lower bounds differ (environment.yml, pyproject.toml)"


def test_same_python_bound(conda, pyproject):
    conda_python = conda_packages(conda)["python"]
    pip_python = SpecifierSet(pyproject["project"]["requires-python"])
    assert lower_bound(conda_python) is not None
    assert lower_bound(conda_python) == lower_bound(pip_python)


def test_pip_section_installs_the_package_with_tests(conda, pyproject):
    lines = [re.sub(r"\s+", " ", line.strip()).replace("'", "").replace('"', "") for line in pip_section(conda)]
    assert any(line in {"-e .[test]", "--editable .[test]", ".[test]"} for line in lines), lines
    assert "test" in pyproject["project"]["optional-dependencies"]
    assert "pip" in conda_packages(conda), "list `pip` itself before the `- pip:` section"


def test_parser_catches_a_mismatch():
    # The checks above must be able to fail: a conda-only pin and a renamed package.
    assert parse_conda_spec("pytorch >=2.3") == ("torch", SpecifierSet(">=2.3"))
    assert lower_bound(parse_conda_spec("scipy>=1.10,<2")[1]) == Version("1.10")
    assert lower_bound(SpecifierSet(">=1.9")) != lower_bound(SpecifierSet(">=1.10"))
    with pytest.raises(pytest.fail.Exception, match="pip-compatible"):
        parse_conda_spec("pytorch=2.3")
