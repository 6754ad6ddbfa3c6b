"""The README's measured figures are the committed JSON's: scripts/readme_results.py writes them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme_results = _load("readme_results")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_results_block_is_in_the_readme():
    names = re.findall(r"<!-- results: ([\w-]+) -->", README)
    assert sorted(names) == sorted(readme_results.BLOCKS), "one block per JSON-backed table"


@pytest.mark.parametrize("name", sorted(readme_results.BLOCKS))
def test_readme_block_is_what_the_json_says(name):
    body = readme_results.BLOCKS[name]()
    if body is None:
        pytest.fail(f"{name}: its JSON is not committed, so the README's figures come from nowhere")
    match = re.search(rf"<!-- results: {name} -->\n(.*?)<!-- end results: {name} -->", README, re.DOTALL)
    assert match.group(1) == body, f"README.md's {name} block is out of date: run  python scripts/readme_results.py"


def test_a_number_typed_into_a_block_is_caught():
    edited = README.replace("| 25.5 |", "| 24.5 |", 1)
    assert edited != README, "the shipped UNet's FID is in the README"
    assert readme_results.render(edited) != edited
    assert readme_results.render(README) == README


def test_figures_follow_the_json():
    """Two numbers derived in the templates, against the JSON by hand."""
    import json

    study = json.loads((ROOT / "course_ddpm" / "measurements" / "sampler_study.json").read_text())
    rows = {r["name"]: r for r in study["results"]}
    ratio = rows["ddim50_eta0"]["fid_common_n"] / rows["ddpm_small"]["fid_common_n"]
    assert f"reaches {ratio:.1f}x DDPM's FID" in readme_results.sampler_study()
    card = json.loads((ROOT / "course_ddpm" / "weights" / "ddpm_unet.json").read_text())
    assert f"| {card['evaluation']['fid']:.1f} |" in readme_results.shipped_unet()
