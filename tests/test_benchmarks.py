"""Smoke tests for the scripts in benchmarks/ (sampler study, training-budget study, network
benchmark, learning curve).

The scripts are run end to end on tiny stand-in models (T = 20, a few images) or in their
quick modes through their ``main`` functions, and the structure of what they return, write
and print is checked; properties the studies rely on are checked directly: DDIM with eta = 0
gives the same images whatever the batch size, two models built alike see the same batches,
speed-ups are ratios of hand-made timings, and the network table's parameter counts and FLOPs
are the package's for the same configurations.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from course_ddpm.checkpoints import load_model, save_model, schedule_card, schedule_from_card
from conftest import require_or_skip
from course_ddpm.fid import mnist_fid
from course_ddpm.networks import build_model, count_parameters, flops_per_image
from course_ddpm.results import load_result
from course_ddpm.sampling import sample
from course_ddpm.schedules import linear_schedule
from course_ddpm.training_config import TrainConfig
from course_ddpm.training_step import Batch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# T = 20 leaves signal in x_T (a warning the package gives on purpose); fine for smoke tests.
pytestmark = pytest.mark.filterwarnings("ignore::course_ddpm.schedules.TerminalSignalWarning")
needs_classifier = pytest.mark.usefixtures("shipped_classifier")  # skipped without its weights; failed in CI


def _load_script(name: str):
    """Import benchmarks/<name>.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def keep_threads():
    """The scripts' main() sets torch's thread count; put it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_unet() -> torch.nn.Module:
    return build_model("unet", base_channels=8, channel_mults=(1, 2), attention=False)


def _table_rows(text: str, first_cell: str) -> list[list[str]]:
    return [line.strip("|").split("|") for line in text.splitlines() if line.startswith(f"| {first_cell} |")]


def _check_histogram(r: dict, n: int) -> None:
    assert sum(r["digit_counts"]) == n
    assert math.isclose(sum(r["digit_fractions"]), 1.0, abs_tol=1e-9)
    assert 0.0 <= r["kl_from_uniform"] <= math.log(10) + 1e-9
    assert 0.0 < r["mean_confidence"] <= 1.0
    assert r["fid_floor"] < r["fid_ceiling"] and r["fid"] >= -1e-6


# ------------------------------------------------------------------------ sampler study
def test_sampler_configs_and_selection():
    study = _load_script("sampler_study")
    configs = study.default_configs()
    names = [c.name for c in configs]
    assert len(configs) == 2 + 4 * 3 and len(set(names)) == len(names)
    assert {(c.steps, c.eta) for c in configs if c.sampler == "ddim"} == {
        (k, e) for k in (10, 20, 50, 100) for e in (0.0, 0.5, 1.0)
    }
    assert {c.variance for c in configs if c.sampler == "ddpm"} == {"fixed_small", "fixed_large"}
    assert [c.name for c in study.select_configs("ddim50_*,ddpm_large", configs)] == [
        "ddpm_large", "ddim50_eta0", "ddim50_eta0.5", "ddim50_eta1",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="ddim7"):
        study.select_configs("ddim7_eta0", configs)


def test_ablation_configs_cover_eta_clipping_and_spacing_once_each():
    study = _load_script("sampler_study")
    configs = study.ablation_configs()
    assert {(c.eta, c.clip_x0, c.spacing) for c in configs} == {
        (e, clip, spacing) for e in (0.0, 1.0) for clip in (True, False) for spacing in ("leading", "trailing")
    }
    assert all(c.sampler == "ddim" and c.steps == 50 for c in configs) and len({c.name for c in configs}) == 8
    # the defaults of the study are the ablation's "clip, leading" corner: same name, same settings
    default = {c.name: c for c in study.default_configs()}
    for c in configs:
        if c.name in default:
            assert c == default[c.name] and c.clip_x0 and c.spacing == "leading"


@needs_classifier
def test_sampler_study_features_in_two_feature_spaces(tmp_path, mnist_root, keep_threads, capsys):
    from course_ddpm.feature_metrics import precision_recall
    from course_ddpm.fid import classifier_outputs
    from course_ddpm.pretrained import load_pretrained

    study = _load_script("sampler_study")
    torch.manual_seed(0)
    checkpoint = save_model(tmp_path / "tiny.safetensors", tiny_unet(), {"schedule": schedule_card("linear", 60, False)})
    result = study.main(["--checkpoint", str(checkpoint), "--ablation", "--features", "--n", "12", "--ddpm-n", "8",
                         "--configs", "ddpm_small,ddim50_eta1_noclip_trailing", "--threads", "1", "--no-progress"])  # fmt: skip
    rows = {r["name"]: r for r in result["results"]}
    assert set(rows) == {"ddpm_small", "ddim50_eta1_noclip_trailing"}
    assert rows["ddim50_eta1_noclip_trailing"]["clip_x0"] is False
    assert rows["ddim50_eta1_noclip_trailing"]["spacing"] == "trailing"
    for r in rows.values():
        assert set(r["features"]) == {"a", "b"}
        for space in r["features"].values():
            assert 0 <= space["precision"] <= 1 and 0 <= space["recall"] <= 1 and space["fid"] >= 0
    # feature space "a" is the course classifier's: its FID column is the study's FID of the same 8 samples
    assert rows["ddpm_small"]["features"]["a"]["fid"] == pytest.approx(rows["ddpm_small"]["fid"], rel=1e-6)
    assert "| ddpm_small |" in capsys.readouterr().out
    assert load_pretrained("classifier_b")[0].num_features == 64


def test_ddim_eta0_samples_do_not_depend_on_batch_size():
    """The study samples in batches from a shared x_T; deterministic DDIM must not notice."""
    study = _load_script("sampler_study")
    torch.manual_seed(0)
    model, schedule = tiny_unet().eval(), linear_schedule(20, warn=False)
    config = study.SamplerConfig("ddim5_eta0", "ddim", steps=5, eta=0.0)
    x_T = study.draw_x_T(6, seed=3)
    batched, _, _ = study.run_config(model, schedule, config, x_T, seed=0, batch_size=4, progress=False)
    whole = sample(model, schedule, (6, 1, 28, 28), sampler="ddim", num_inference_steps=5, eta=0.0, x_T=x_T,
                   progress=False).samples
    torch.testing.assert_close(batched, whole, rtol=1e-5, atol=1e-5)


@needs_classifier
def test_sampler_study_main_on_a_tiny_checkpoint(tmp_path, mnist_root, keep_threads, capsys):
    study = _load_script("sampler_study")
    torch.manual_seed(0)
    card = {"schedule": schedule_card("linear", 20, False)}
    checkpoint = save_model(tmp_path / "tiny.safetensors", tiny_unet(), card)
    out = tmp_path / "study.json"
    result = study.main([
        "--checkpoint", str(checkpoint), "--n", "6", "--ddpm-n", "4", "--configs", "ddpm_*,ddim10_eta0,ddim10_eta1",
        "--batch-size", "4", "--threads", "1", "--json", str(out), "--no-progress",
    ])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = result["results"]
    assert [r["name"] for r in rows] == ["ddpm_small", "ddpm_large", "ddim10_eta0", "ddim10_eta1"]
    assert [r["n"] for r in rows] == [4, 4, 6, 6]
    assert [r["network_calls"] for r in rows] == [20, 20, 10, 10]
    assert [r["call_ratio"] for r in rows] == [1.0, 1.0, 2.0, 2.0]
    assert rows[0]["speedup"] == 1.0 and all(r["speedup"] > 0 for r in rows)  # the ratios: test_speedups_...
    for r in rows:
        assert r["wall_s_per_sample"] == pytest.approx(r["wall_s"] / r["n"])
        _check_histogram(r, r["n"])
        assert r["fid_floor"] == result["reference"][str(r["n"])]["floor"]
    assert set(result["reference"]) == {"4", "6"} and result["common_n"] == 4
    # the like-for-like column: DDIM's first 4 samples start from the x_T the DDPM rows used
    model, _ = load_model(checkpoint)
    first4 = sample(model, linear_schedule(20, warn=False), (4, 1, 28, 28), sampler="ddim", num_inference_steps=10,
                    eta=0.0, x_T=study.draw_x_T(6, seed=0)[:4], progress=False).samples  # fmt: skip
    assert rows[2]["fid_common_n"] == pytest.approx(mnist_fid(first4), rel=1e-4)
    assert [r["fid_common_n"] == r["fid"] for r in rows] == [True, True, False, False]
    assert result["meta"]["checkpoint_step"] is None and result["T"] == 20

    printed = capsys.readouterr().out
    header = next(line for line in printed.splitlines() if line.startswith("| config | sampler |"))
    assert header.endswith("MNIST-FID, first 4 samples (same x_T) |")
    for name in ("ddpm_small", "ddpm_large", "ddim10_eta0", "ddim10_eta1"):
        measures, histogram = _table_rows(printed, name)
        assert len(measures) == header.count("|") - 1 and len(histogram) == 2 + 10
    assert "Song et al. 2021" in printed and "N = 4: floor" in printed and "N = 6: floor" in printed


@needs_classifier
def test_sampler_study_parts_merge_into_the_single_run(tmp_path, mnist_root, keep_threads, capsys):
    """Two parts run separately and merged give the single run's samples' measures, speed-ups recomputed."""
    study = _load_script("sampler_study")
    torch.manual_seed(0)
    checkpoint = save_model(tmp_path / "tiny.safetensors", tiny_unet(), {"schedule": schedule_card("linear", 20, False)})
    common = ["--checkpoint", str(checkpoint), "--n", "6", "--ddpm-n", "4", "--batch-size", "4", "--no-progress"]
    whole = study.main([*common, "--configs", "ddpm_*,ddim10_eta0"])
    part_a = study.main([*common, "--configs", "ddim10_eta0,ddpm_small", "--json", str(tmp_path / "a.json")])
    study.main([*common, "--configs", "ddpm_large", "--json", str(tmp_path / "b.json")])
    capsys.readouterr()
    merged = study.main(["--merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(tmp_path / "m.json")])
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads(json.dumps(merged))
    assert [r["name"] for r in merged["results"]] == ["ddpm_small", "ddpm_large", "ddim10_eta0"]
    for mine, single in zip(merged["results"], whole["results"]):
        for key in ("n", "fid", "fid_common_n", "digit_counts", "fid_floor", "network_calls"):
            assert mine[key] == pytest.approx(single[key], rel=1e-6), key
    assert set(merged["reference"]) == {"4", "6"} and len(merged["meta"]["parts"]) == 2
    assert "| ddpm_large | ddpm | 20 |" in capsys.readouterr().out
    # the shared x_T: a part's first N images are the other's, as long as N x 784 is a multiple of 16
    torch.testing.assert_close(study.draw_x_T(4, seed=0), study.draw_x_T(6, seed=0)[:4], rtol=0, atol=0)

    with pytest.raises(ValueError, match="at least two"):
        study.merge_studies([part_a])
    with pytest.raises(ValueError, match="more than one part"):
        study.merge_studies([part_a, part_a])
    part_b = json.loads((tmp_path / "b.json").read_text())
    assert part_a["meta"]["tensors_sha256"] == part_b["meta"]["tensors_sha256"]
    with pytest.raises(ValueError, match="different weights"):
        study.merge_studies([part_a, {**part_b, "meta": {**part_b["meta"], "tensors_sha256": "0" * 64}}])
    other_seed = study.main([*common, "--configs", "ddpm_large", "--seed", "1"])
    with pytest.raises(ValueError, match="differ in seed"):
        study.merge_studies([part_a, other_seed])


def _timed_row(name: str, calls: int, wall_s_per_sample: float, cpu_s_per_sample: float) -> dict:
    return {"name": name, "network_calls": calls, "wall_s_per_sample": wall_s_per_sample,
            "cpu_s_per_sample": cpu_s_per_sample}  # fmt: skip


def test_speedups_are_ratios_of_hand_made_timings_to_ddpm_small_across_merged_parts():
    """Timings with known ratios: DDPM 2 s/sample, DDIM-10 0.1 s (20x) and 0.25 CPU-s (4x the CPU's 1 s)."""
    study = _load_script("sampler_study")
    part_a = [_timed_row("ddim10_eta0", 10, 0.1, 0.25)]
    part_b = [_timed_row("ddpm_large", 1000, 4.0, 2.0), _timed_row("ddpm_small", 1000, 2.0, 1.0)]
    study.add_speedups(part_a, T=1000)
    assert part_a[0]["speedup"] is None and part_a[0]["call_ratio"] == 100.0  # no ddpm_small in this part
    common = {"T": 1000, "seed": 0, "batch_size": 4, "threads": 1, "common_n": 4, "reference": {}, "published": {}}
    merged = study.merge_studies([
        {**common, "results": part_a, "meta": {"tensors_sha256": "a" * 64}},
        {**common, "results": part_b, "meta": {"tensors_sha256": "a" * 64}},
    ])  # fmt: skip
    rows = {r["name"]: r for r in merged["results"]}
    assert [r["name"] for r in merged["results"]] == ["ddpm_small", "ddpm_large", "ddim10_eta0"]
    assert rows["ddim10_eta0"]["speedup"] == pytest.approx(20.0) and rows["ddim10_eta0"]["speedup_cpu"] == 4.0
    assert rows["ddpm_large"]["speedup"] == 0.5 and rows["ddpm_small"]["speedup"] == 1.0
    assert rows["ddim10_eta0"]["call_ratio"] == 100.0 and rows["ddpm_large"]["call_ratio"] == 1.0


# ------------------------------------------------------------------ training-budget study
def _tiny_config(**changes) -> TrainConfig:
    return TrainConfig(**{"T": 20, "batch_size": 8, "warmup_steps": 2, "lr": 1e-3, "seed": 0, **changes})


def test_side_by_side_models_see_the_same_batches():
    """Same seed, same data order, t and eps: two models built alike take identical steps,
    and the warm-up pass neither changes weights nor draws from the random streams."""
    side = _load_script("side_by_side")
    config, schedule = _tiny_config(), linear_schedule(20, warn=False)
    x = torch.rand(32, 1, 28, 28) * 2 - 1
    a = side.start_trainee("a", "a", lambda c: tiny_unet(), config, len(x))
    b = side.start_trainee("b", "b", lambda c: tiny_unet(), config, len(x))
    side.warm_up(b, x, config)
    losses_a = [side.take_step(a, schedule, x, config) for _ in range(3)]
    losses_b = [side.take_step(b, schedule, x, config) for _ in range(3)]
    assert losses_a == losses_b == a.losses and a.state.step == 3 and len(a.step_wall_s) == 3
    for p_a, p_b in zip(a.state.model.parameters(), b.state.model.parameters()):
        torch.testing.assert_close(p_a, p_b, rtol=0, atol=0)
    moved = [not torch.equal(p, q) for p, q in zip(a.state.model.parameters(), a.state.ema_model.parameters())]
    assert any(moved)  # the EMA lags behind the trained weights


def test_side_by_side_budget_gives_each_step_to_the_network_behind():
    side = _load_script("side_by_side")
    config, schedule = _tiny_config(), linear_schedule(20, warn=False)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    trainees = [side.start_trainee(k, k, lambda c: tiny_unet(), config, len(x)) for k in ("a", "b")]
    clocks = [{"a": 0.0, "b": 0.0}]  # CPU seconds of each network after every step

    def after_step(trainee) -> None:
        before = clocks[-1]
        behind = min(c for c in before.values() if c < 0.2)
        assert before[trainee.key] == behind  # the one that stepped had used the least CPU time
        clocks.append({tr.key: tr.cpu_s for tr in trainees})

    side.train_for_budget(trainees, schedule, x, config, budget_s=0.2, progress=False, after_step=after_step)
    assert all(tr.cpu_s >= 0.2 for tr in trainees) and len(clocks) - 1 == sum(tr.state.step for tr in trainees)
    with pytest.raises(ValueError, match="budget_s"):
        side.train_for_budget(trainees, schedule, x, config, budget_s=0.0, progress=False)


@needs_classifier
def test_budget_study_run_on_tiny_models(mnist_root, keep_threads):
    budget = _load_script("budget_study")
    from course_ddpm.data import load_mnist

    x = load_mnist(train=True, root=mnist_root)[0][:64]
    models = {"tiny": ("tiny UNet", lambda c: tiny_unet()), "simple": ("SimpleUNet", budget.MODELS["simple_unet"][1])}
    result = budget.run_budget_study(models, x, _tiny_config(), budget_s=0.3, n=4, progress=False)
    json.dumps(result)  # JSON-safe
    assert [r["key"] for r in result["results"]] == ["tiny", "simple"]
    for r in result["results"]:
        assert r["cpu_s"] >= 0.3 and r["steps"] >= 1
        assert r["images_seen"] == 8 * r["steps"] and r["epochs"] == pytest.approx(r["images_seen"] / 64)
        assert math.isfinite(r["final_loss"]) and len(r["loss_curve"]) == math.ceil(r["steps"] / budget.LOSS_WINDOW)
        _check_histogram(r, 4)
    table = budget.format_table(result)
    assert len(_table_rows(table, "tiny UNet")) == 2 and len(_table_rows(table, "SimpleUNet")) == 2


@needs_classifier
@pytest.mark.slow
def test_budget_study_main_with_the_diffusers_adapter(tmp_path, mnist_root, keep_threads, capsys):
    try:
        import diffusers  # noqa: F401 - the adapter under test wraps it
    except ImportError:
        require_or_skip("diffusers is not installed (pip install -e '.[test]')")
    budget = _load_script("budget_study")
    out = tmp_path / "budget.json"
    result = budget.main([
        "--models", "unet,diffusers", "--budget-s", "0.5", "--batch-size", "4", "--n", "2", "--threads", "1",
        "--mnist-root", str(mnist_root), "--json", str(out), "--no-progress",
    ])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [r["label"] for r in result["results"]] == ["UNet (default)", "diffusers UNet2DModel (HF course)"]
    assert result["config"]["T"] == 1000 and result["sampler"] == "ddim, 50 steps, eta 0"
    for r in result["results"]:
        _check_histogram(r, 2)
    assert "| diffusers UNet2DModel (HF course) |" in capsys.readouterr().out


# ------------------------------------------------------------------ network benchmark
def test_held_out_mse_is_the_per_image_eps_mse_averaged_within_each_t_range():
    bench = _load_script("bench_networks")
    torch.manual_seed(0)
    model, schedule = tiny_unet().eval(), linear_schedule(1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(12, 1, 28, 28, generator=g) * 2 - 1, torch.randn(12, 1, 28, 28, generator=g)
    t = torch.tensor([5, 50, 99, 100, 300, 499, 500, 700, 999, 0, 250, 800])
    scores = bench.held_out_mse(model, schedule, Batch(x0, t, eps, None), chunk=5)
    alpha_bar = schedule.alpha_bar[t].float().reshape(-1, 1, 1, 1)  # (B, 1, 1, 1)
    with torch.no_grad():  # Ho et al. eq. 4 and the squared error of eq. 14, written out, per image
        x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
        per_image = (model(x_t, t) - eps).square().mean(dim=(1, 2, 3))  # (B,)
    assert scores["all"] == pytest.approx(per_image.mean().item(), rel=1e-5)
    for lo, hi in bench.T_BUCKETS:
        inside = (t >= lo) & (t < hi)
        assert scores[f"t in [{lo}, {hi})"] == pytest.approx(per_image[inside].mean().item(), rel=1e-5)


def test_bench_networks_quick_run_writes_the_json_of_the_readme_network_table(tmp_path, mnist_root, keep_threads,
                                                                              capsys):  # fmt: skip
    bench = _load_script("bench_networks")
    out = tmp_path / "networks.json"
    result = bench.main(["--mode", "both", "--quick", "--mnist-root", str(mnist_root), "--json", str(out),
                         "--no-progress"])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert set(result) == {"modes", "threads", "batch_size", "T", "matmul", "throughput", "study", "config",
                           "networks", "meta"}  # fmt: skip
    assert result["threads"] == 1 and result["batch_size"] == 4 and result["matmul"]["gflop_per_s"] > 0
    assert {"argv", "date", "torch", "machine", "total_wall_s"} <= set(result["meta"])
    rows = {r["key"]: r for r in result["networks"]}
    assert list(rows) == ["simple", "16x1", "16x2", "32x1", "32x2", "diffusers"]
    # parameters and FLOPs are the package's count for the same configurations
    same_configs = {"simple": build_model("simple_unet", T=1000), "16x1": build_model("unet"),  # the default UNet
                    "16x2": build_model("unet", num_res_blocks=2), "32x1": build_model("unet", base_channels=32),
                    "32x2": build_model("unet", base_channels=32, num_res_blocks=2),
                    "diffusers": _load_script("side_by_side").DiffusersUNet()}  # fmt: skip
    for key, model in same_configs.items():
        assert rows[key]["params"] == count_parameters(model), key
        assert rows[key]["mflop_per_image"] == flops_per_image(model) / 1e6, key
    timed = [k for k, r in rows.items() if r["throughput"] is not None]
    assert timed == ["simple", "16x1", "32x1", "diffusers"]
    for key in timed:
        speed = rows[key]["throughput"]
        assert 0 < speed["s_per_step_best"] <= speed["s_per_step_median"]
        assert speed["images_per_s"] == pytest.approx(4 / speed["s_per_step_median"]) and speed["percent_of_matmul"] > 0
    scored = [k for k, r in rows.items() if r["study"] is not None]
    assert scored == ["simple", "16x1", "16x2", "32x1", "32x2"]
    for key in scored:
        evals = rows[key]["study"]["eps_mse"]
        assert [e["cpu_s"] >= c for e, c in zip(evals, result["study"]["checkpoints_cpu_s"])] == [True] * 3
        assert all(math.isfinite(e["all"]) and e["all"] > 0 for e in evals)
        assert evals[-1]["step"] == rows[key]["study"]["steps"]  # the last score is of the final weights
    printed = capsys.readouterr().out
    for key in rows:
        assert len(_table_rows(printed, rows[key]["label"])) == (rows[key]["throughput"] is not None) + (
            rows[key]["study"] is not None)  # fmt: skip


# ------------------------------------------------------------------ learning curve
def test_mean_loss_before_uses_the_window_ending_at_the_step():
    curve = _load_script("learning_curve")
    log = [{"step": s, "loss": float(s)} for s in range(100, 1001, 100)]
    assert curve.mean_loss_before(log, 500, 300) == pytest.approx((300 + 400 + 500) / 3)
    assert curve.mean_loss_before(log, 1000, 100) == 1000.0
    assert curve.mean_loss_before(log, 50, 40) is None


@needs_classifier
def test_learning_curve_orders_snapshots_by_step_and_measures_each(tmp_path, mnist_root, keep_threads, capsys):
    curve = _load_script("learning_curve")
    schedule = {"schedule": schedule_card("linear", 20, False)}
    torch.manual_seed(0)
    late = save_model(tmp_path / "late.safetensors", tiny_unet(), {**schedule, "step": 300})
    early = save_model(tmp_path / "early.safetensors", tiny_unet(), {**schedule, "step": 100})
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (100, 200, 300)))
    out = tmp_path / "curve.json"
    rows = curve.main([str(late), str(early), "--log", str(log), "--n", "6", "--steps", "10", "--loss-window", "200", "--json", str(out)])
    assert [r["step"] for r in rows] == [100, 300] and [r["file"] for r in rows] == ["early.safetensors", "late.safetensors"]
    assert rows[1]["loss"] == pytest.approx((1 / 200 + 1 / 300) / 2)
    for r in rows:  # each row is evaluate()'s measures of that file's model
        assert r["n"] == 6 and r["fid_floor"] < r["fid_ceiling"] and math.isclose(sum(r["digit_fractions"]), 1.0)
    assert rows[0]["fid"] != rows[1]["fid"]  # two different networks, the same x_T
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(rows))
    assert "| 300 |" in capsys.readouterr().out
    save_model(tmp_path / "again.safetensors", tiny_unet(), {**schedule, "step": 300})
    with pytest.raises(ValueError, match="same step"):
        curve.learning_curve([late, tmp_path / "again.safetensors"], [], n=6, steps=10)


def test_learning_curve_merges_parts_into_the_committed_layout():
    """The committed curve is the merge of the parts its meta lists: each part's rows are the files of its argv."""
    curve = _load_script("learning_curve")
    committed = load_result("learning_curve")
    parts = []
    for meta in committed["meta"]["parts"]:
        files = {Path(arg).name for arg in meta["argv"] if arg.endswith(".safetensors")}
        parts.append({"meta": meta, "rows": [row for row in committed["rows"] if row["file"] in files]})
        assert meta["environment"]["cpu"] and meta["total_wall_s"] > 0 and meta["threads"] >= 1  # machine, wall time
    assert sum(len(part["rows"]) for part in parts) == len(committed["rows"]) >= 2
    assert curve.merge_parts(parts[::-1])["rows"] == committed["rows"], "rows come out ordered by step"
    assert curve.merge_parts(parts) == committed, "the committed file has exactly the merged layout"
    with pytest.raises(ValueError, match="same step"):
        curve.merge_parts([parts[0], parts[0]])


def test_compare_logs_averages_the_finer_log_to_the_reference_steps():
    curve = _load_script("learning_curve")
    fine = [{"step": s, "loss": 1.0 / s} for s in range(50, 451, 50)]  # every 50 steps, up to 450
    reference = [{"step": s, "loss": (1.0 / (s - 50) + 1.0 / s) / 2} for s in range(100, 1001, 100)]
    check = curve.compare_logs(fine, reference)
    assert check["entries_compared"] == 4 and check["through_step"] == 400 and check["max_rel_diff"] < 1e-15
    reference[1]["loss"] *= 1.01  # another run
    assert curve.compare_logs(fine, reference)["max_rel_diff"] == pytest.approx(0.01 / 1.01)
    with pytest.raises(ValueError, match="tile"):
        curve.compare_logs([{"step": 60, "loss": 1.0}, {"step": 100, "loss": 1.0}], reference)
    with pytest.raises(ValueError, match="share no interval"):
        curve.compare_logs([{"step": 50, "loss": 1.0}], reference)


def test_committed_learning_curve_is_the_shipped_run():
    """Its rerun's loss log repeated the shipped log; the last row is the shipped weights themselves."""
    committed = load_result("learning_curve")
    checks = [part["log_check"] for part in committed["meta"]["parts"] if part.get("log_check")]
    assert checks and all(c["max_rel_diff"] < 1e-12 for c in checks)
    rerun_steps = [row["step"] for row in committed["rows"][:-1]]
    assert max(c["through_step"] for c in checks) >= max(rerun_steps)  # every snapshot is within the checked log
    last = committed["rows"][-1]
    from course_ddpm.pretrained import weights_dir

    card = json.loads((weights_dir() / "ddpm_unet.json").read_text())
    assert last["step"] == card["step"] and last["model_tensors_sha256"] == card["evaluation"]["model_tensors_sha256"]


# ------------------------------------------------------------------------ guidance sweep
@needs_classifier
def test_guidance_sweep_main_on_the_shipped_conditional_model(tmp_path, mnist_root, keep_threads, capsys):
    sweep_script = _load_script("guidance_sweep")
    out = tmp_path / "sweep.json"
    sweep = sweep_script.main(["--n", "20", "--scales", "0", "1", "2", "--steps", "2", "--threads", "2",
                               "--no-progress", "--json", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(sweep))
    assert [r["guidance_scale"] for r in sweep["results"]] == [0.0, 1.0, 2.0]
    assert sweep["n_per_digit"] == 2 and sweep["meta"]["tensors_sha256"]
    for r in sweep["results"]:
        assert len(r["accuracy_per_digit"]) == len(r["fid_per_digit"]) == len(r["fid_floor_per_digit"]) == 10
        assert r["accuracy"] == pytest.approx(sum(r["accuracy_per_digit"]) / 10)
        assert 0 <= r["pixels"]["grey"] <= 1 and r["fid"] >= 0
    table = capsys.readouterr().out
    assert len(_table_rows(table, "2")) == 1


def test_guidance_sweep_shortcuts_at_s_0_and_1_equal_the_guided_formula(keep_threads):
    """The sweep samples s = 0 with the null label and s = 1 with the labels, one pass each; both
    must equal guidance at that scale (two passes) up to float32 rounding."""
    from course_ddpm.pretrained import load_pretrained
    from course_ddpm.sampling import generate

    sweep_script = _load_script("guidance_sweep")
    model, card = load_pretrained("unet_cond")
    schedule = schedule_from_card(card)
    x_T = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 5, 9])
    for s in (0.0, 1.0):
        fast = sweep_script.sample_at_scale(model, schedule, x_T, labels, s, steps=3, batch_size=4, progress=False)
        guided = generate(model, schedule, 4, x_T=x_T, labels=labels, guidance_scale=s, num_inference_steps=3,
                          progress=False)  # fmt: skip
        torch.testing.assert_close(fast, guided, rtol=0, atol=1e-4)
    assert not torch.allclose(fast, sweep_script.sample_at_scale(model, schedule, x_T, labels, 0.0, steps=3,
                                                                  batch_size=4, progress=False), atol=1e-2)  # fmt: skip


# ------------------------------------------------------------------------ interpolation study
def test_interpolation_midpoints_have_the_norms_of_their_paths():
    study = _load_script("interpolation_study")
    starts = study.midpoints(64, seed=0)
    norms = {k: v.flatten(1).norm(dim=1).mean().item() for k, v in starts.items()}
    assert norms["endpoint"] == pytest.approx(28.0, rel=0.02) and norms["slerp"] == pytest.approx(28.0, rel=0.02)
    assert norms["line"] == pytest.approx(28.0 / math.sqrt(2), rel=0.02)  # inside the sphere
    g = torch.Generator().manual_seed(0)
    x_a, x_b = torch.randn(64, 1, 28, 28, generator=g), torch.randn(64, 1, 28, 28, generator=g)
    torch.testing.assert_close(starts["line"], (x_a + x_b) / 2)
    torch.testing.assert_close(starts["endpoint"], x_a)


@needs_classifier
def test_interpolation_study_main_writes_its_json(tmp_path, mnist_root, keep_threads):
    study = _load_script("interpolation_study")
    out = tmp_path / "interp.json"
    result = study.main(["--n", "6", "--steps", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert set(result["rows"]) == {"endpoint", "slerp", "line"}
    for r in result["rows"].values():
        assert 0 < r["mean_confidence"] <= 1 and r["fid"] >= 0 and r["contrast"] > 0
