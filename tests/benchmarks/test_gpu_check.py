"""benchmarks/gpu_check.py: its CPU mode end to end, and the parts of its GPU path a CPU can check (sizes, specs,
the plain script's settings, nvidia-smi parsing, argument handling, the table), since the GPU run gets one try."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check import GPU_CASES, GPU_MODEL, TINY_MODEL, Check, settings_for
from benchmarks.gpu_check_table import render_table
from benchmarks.gpu_memory import MemoryPoller, gpu_facts, parse_memory_used

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.py"


# ---- nvidia-smi, with stand-ins for its output ---------------------------------------------------------------


def test_memory_lines_are_parsed_and_unfilled_ones_skipped():
    text = "0, 1234\n1, 56\n\n2, [N/A]\nFailed to initialize NVML\n1, 80\n"
    assert parse_memory_used(text) == {0: 1234, 1: 80}


def test_the_poller_takes_its_first_sample_as_baseline_and_keeps_the_peak():
    fake_loop = ("import time\nfor used in (500, 1500, 900):\n    print(f'0, {used}', flush=True)\n"
                 "    time.sleep(0.05)\ntime.sleep(60)\n")
    with MemoryPoller(command=[sys.executable, "-c", fake_loop]) as poller:
        assert poller.peak.baseline_mib == {0: 500}  # entering waits for the first sample
    assert poller.peak.peak_mib == {0: 1500} and poller.peak.samples == 3
    assert poller.peak.above_baseline_mib() == 1000
    assert poller._process.poll() is not None  # the endless loop was stopped


def test_a_poller_without_samples_has_no_peak():
    with MemoryPoller(command=[sys.executable, "-c", "print('No devices were found')"],
                      first_sample_timeout=2) as poller:
        pass
    assert poller.peak.samples == 0 and poller.peak.above_baseline_mib() is None


def test_gpu_facts_come_from_the_query_lines():
    fake = [sys.executable, "-c", "print('0, NVIDIA H200, 143771 MiB, 570.86.15')"]
    assert gpu_facts(fake) == [{"index": "0", "name": "NVIDIA H200", "memory_total": "143771 MiB",
                                "driver_version": "570.86.15"}]


# ---- the GPU plan --------------------------------------------------------------------------------------------


def test_the_gpu_model_has_about_350m_parameters_by_the_formula_the_bundled_model_obeys():
    bundled = REPO_ROOT / "examples" / "models" / "tiny-llama"
    assert TINY_MODEL.parameters() == gpu_check.stored_parameters(bundled)
    assert 340e6 < GPU_MODEL.parameters() < 370e6
    assert GPU_MODEL.hidden_size % GPU_MODEL.num_heads == 0 and GPU_MODEL.context == 2048


def test_the_gpu_settings_fit_the_model_and_the_kill():
    settings = settings_for("cuda", tiny=False)
    assert [c.name for c in settings.cases] == ["full-bf16", "lora-bf16", "qlora-nf4-paged8"]
    assert settings.max_seq_len == GPU_MODEL.context and set(settings.eval_tasks) == set(gpu_check.LEADERBOARD_TASKS)
    # A checkpoint to resume from, and steps after it for the killed worker to be in the middle of.
    assert settings.save_every < settings.resume_steps - settings.save_every
    assert settings.resume_case.name == "full-bf16" and settings.threads is None


def test_the_cpu_settings_skip_exactly_the_cuda_only_cases():
    settings = settings_for("cpu", tiny=True)
    skipped = {case.name: case.cuda_only() for case in settings.cases if case.cuda_only()}
    assert set(skipped) == {"full-bf16", "lora-bf16", "qlora-nf4-paged8"}
    assert "paged_adamw_8bit" in skipped["qlora-nf4-paged8"]
    assert settings.resume_case.name == "full-fp32" and settings.threads == 1


def _gpu_check(tmp_path: Path) -> Check:
    return Check(settings_for("cuda", tiny=False), out=tmp_path / "out", work=tmp_path / "work")


def test_the_generated_gpu_specs_are_valid_tunelab_specs(tmp_path):
    check = _gpu_check(tmp_path)
    specs = [gpu_check.throughput_spec(check, case) for case in GPU_CASES] + [gpu_check.resume_spec(check)]
    # What the check builds before it submits: submit refuses a spec whose model or data is not there.
    (tmp_path / "work" / "model").mkdir(parents=True)
    (tmp_path / "work" / "data.jsonl").write_text('{"text": "t"}\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "tunelab", "--home", str(tmp_path / "home"), "submit", "--dry-run",
                           *map(str, specs)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    qlora = specs[2].read_text(encoding="utf-8")
    for line in ('kind = "qlora"', 'dtype = "bfloat16"', 'bnb_compute_dtype = "bfloat16"', "paged_optimizer = true",
                 "paged_optimizer_bits = 8", "max_seq_len = 2048", "save_every = 31"):
        assert line in qlora
    assert "save_every = 12" in specs[3].read_text(encoding="utf-8")


def test_the_plain_script_gets_the_specs_settings(tmp_path):
    check = _gpu_check(tmp_path)
    for case in GPU_CASES:
        config = gpu_check.plain_config(check, case)
        assert (config.method, config.dtype, config.device) == (case.kind, case.dtype, "cuda")
        assert config.optim == ("paged_adamw_8bit" if case.paged else None)
        assert (config.steps, config.batch_size, config.max_seq_len) == (30, 8, 2048)
        assert config.lora_targets == list(check.settings.lora_targets) and config.lora_r == check.settings.lora_r


# ---- arguments ------------------------------------------------------------------------------------------------


def test_cuda_without_a_gpu_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    assert "--device cuda: no CUDA GPU visible" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--parts", "training,bogus"], "unknown part(s) bogus"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--device", "tpu"], "invalid choice"),
])
def test_bad_arguments_are_refused(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        gpu_check.parse_args(["--out", str(tmp_path), *argv])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_parts_run_in_their_own_order():
    assert gpu_check.parse_args(["--out", "x", "--parts", "eval, training"]).parts == ("training", "eval")


# ---- the table of a GPU run ------------------------------------------------------------------------------------


def _gpu_results() -> dict:
    side = {"tokens_per_second": 150_000.0, "final_loss": 7.25, "peak_allocated_mib": 30_000.0,
            "peak_reserved_mib": 32_000.0, "nvidia_smi_peak_mib": 33_500, "max_rss_mib": 4_000.0}
    case = {"case": "full-bf16", "status": "ok", "ratio": 0.985, "meets_target": True,
            "tunelab": dict(side, tokens_per_second=147_750.0), "plain": side}
    return {
        "machine": {"device": "cuda", "gpus": [{"name": "NVIDIA H200", "memory_total": "143771 MiB"}],
                    "torch": "2.13.0", "torch_cuda": "12.8"},
        "wall_seconds": 350,
        "parts": {
            "model": {"status": "ok", "seconds": 9, "parameters": 356_559_872, "build_seconds": 7.5},
            "training": {"status": "failed", "error": "1 of 3 training case(s) failed", "seconds": 150, "steps": 30,
                         "batch_size": 8, "max_seq_len": 2048, "tokens_per_run": 491_520, "skipped": [],
                         "cases": [case, dict(case, case="lora-bf16", ratio=0.95, meets_target=False),
                                   {"case": "qlora-nf4-paged8", "status": "failed", "error": "exited 1"}]},
            "resume": {"status": "ok", "seconds": 90, "case": "full-bf16", "steps": 30, "save_every": 12,
                       "settings": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8",
                                    "torch.use_deterministic_algorithms": "True (warn_only)"},
                       "last_step_before_kill": 14, "checkpoint_at_kill": 12, "steps_redone": 2,
                       "worker_said": "resuming from the checkpoint at step 12, 2 logged step",
                       "weights": {"bit_identical": False, "tensors": 192, "tensors_differing": 3,
                                   "max_abs_difference": 0.0078125},
                       "loss_curve_identical": False, "each_step_logged_once": True,
                       "nondeterminism_warnings": ["UserWarning: Memory Efficient attention defaults to a "
                                                   "non-deterministic algorithm."]},
            "eval": {"status": "ok", "seconds": 80, "run_id": 1, "tasks": list(gpu_check.LEADERBOARD_TASKS),
                     "limit": 3, "scores_identical": False, "max_score_difference": 0.0123,
                     "tasks_differing": ["hellaswag"], "fingerprint_batch_sizes": ["1", "auto"],
                     "report": {"marks_mixed_settings": True},
                     "batch_sizes": {"1": {"wall_seconds": 40.2, "detected_batch_sizes": []},
                                     "auto": {"wall_seconds": 20.1, "detected_batch_sizes": [64]}}},
            "doctor": {"status": "ok", "seconds": 2, "queued": 4, "exit_code": 0,
                       "runs": [{"run_id": 1, "name": "gpu-check-full-bf16", "ok": True, "problems": [],
                                 "notes": []}]},
        },
    }


def test_the_table_of_a_gpu_run_shows_every_part():
    table = render_table(_gpu_results())
    assert "NVIDIA H200 (143771 MiB)" in table and "356.6M-parameter" in table
    assert "full-bf16" in table and "147,750" in table and "0.985" in table and "33,500 / 33,500" in table
    assert "0.950  " in table and "(below the 0.97 target)" in table
    assert "qlora-nf4-paged8   FAILED: exited 1" in table
    assert "CUBLAS_WORKSPACE_CONFIG=:4096:8" in table and "3 of 192 tensors differ, max |diff| 0.00781" in table
    assert "nondeterministic op: UserWarning: Memory Efficient attention" in table
    assert "batch auto: 20.1 s (lm-eval chose 64)" in table and "differ (max 0.0123: hellaswag)" in table
    assert "run 1 gpu-check-full-bf16: ok" in table


def test_the_table_says_which_part_failed():
    results = _gpu_results()
    results["parts"]["resume"] = {"status": "failed", "error": "CheckFailed: no checkpoint", "seconds": 300}
    assert "resume: FAILED: CheckFailed: no checkpoint" in render_table(results)


# ---- the CPU mode, end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu-check")
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    results["table"] = (out / "gpu_check.txt").read_text(encoding="utf-8")
    return results


@pytest.mark.slow
def test_cpu_mode_builds_the_bundled_model_size(cpu_run):
    model = cpu_run["parts"]["model"]
    assert model["status"] == "ok" and model["parameters"] == model["expected_parameters"] == TINY_MODEL.parameters()
    assert model["tokenizer_is_bundled"] is True
    assert model["data"]["shortest_row_tokens"] > model["data"]["max_seq_len"]  # every row is cut: no padding


@pytest.mark.slow
def test_cpu_mode_trains_full_and_lora_and_says_what_it_skipped(cpu_run):
    training = cpu_run["parts"]["training"]
    assert training["status"] == "ok"
    assert [case["case"] for case in training["cases"]] == ["full-fp32", "lora-fp32"]
    for case in training["cases"]:
        for side in ("tunelab", "plain"):
            assert case[side]["tokens_per_second"] > 0 and case[side]["max_rss_mib"] > 0
            assert math.isfinite(case[side]["final_loss"])
        assert case["ratio"] > 0 and isinstance(case["meets_target"], bool) and case["same_tokens"] is True
        assert case["loss_difference"] == 0.0  # the plain script trains exactly what tunelab trains
    skipped = {s["case"]: s["reason"] for s in training["skipped"]}
    assert set(skipped) == {"full-bf16", "lora-bf16", "qlora-nf4-paged8"}
    assert all("CUDA" in reason for reason in skipped.values())
    assert "skipped qlora-nf4-paged8: paged_adamw_8bit" in cpu_run["table"]


@pytest.mark.slow
def test_cpu_mode_resumes_a_killed_worker_bit_identically(cpu_run):
    resume = cpu_run["parts"]["resume"]
    assert resume["status"] == "ok"
    assert resume["worker_exit"] == -9 and resume["status_after_kill"] == "running"
    assert resume["checkpoint_at_kill"] >= resume["save_every"] and resume["steps_redone"] >= 0
    assert resume["worker_said"].startswith(f"resuming from the checkpoint at step {resume['checkpoint_at_kill']}")
    assert resume["weights"]["bit_identical"] is True and resume["weights"]["tensors"] > 0
    assert resume["loss_curve_identical"] is True and resume["each_step_logged_once"] is True


@pytest.mark.slow
def test_cpu_mode_evaluates_at_batch_sizes_1_and_auto(cpu_run):
    evaluation = cpu_run["parts"]["eval"]
    assert evaluation["status"] == "ok" and set(evaluation["batch_sizes"]) == {"1", "auto"}
    for entry in evaluation["batch_sizes"].values():
        assert entry["wall_seconds"] > 0 and 0 <= entry["scores"]["truthfulqa_mc2"] <= 1
    assert evaluation["batch_sizes"]["auto"]["detected_batch_sizes"]  # lm-eval's own choice, read from its output
    assert evaluation["fingerprint_batch_sizes"] == ["1", "auto"]
    assert evaluation["report"]["marks_mixed_settings"] is True


@pytest.mark.slow
def test_cpu_mode_records_what_the_doctor_says(cpu_run):
    doctor = cpu_run["parts"]["doctor"]
    assert doctor["status"] == "ok" and doctor["exit_code"] == 0 and doctor["queued"] == 6
    assert [run["ok"] for run in doctor["runs"]] == [True] * 6
    assert isinstance(doctor["cuda_only_specs_flagged"], bool)


def test_a_check_cut_short_keeps_its_figures(tmp_path):
    check = _gpu_check(tmp_path)
    check.out.mkdir(parents=True)
    with check.part("training") as result:
        result["cases"] = [{"case": "full-bf16"}]
        raise gpu_check.CheckFailed("the GPU went away")
    saved = json.loads((check.out / "gpu_check.json").read_text(encoding="utf-8"))
    assert saved["parts"]["training"]["status"] == "failed"
    assert saved["parts"]["training"]["error"] == "CheckFailed: the GPU went away"
    assert saved["parts"]["training"]["cases"] == [{"case": "full-bf16"}]
    assert "Traceback" in (check.out / "logs" / "training-failure.log").read_text(encoding="utf-8")
