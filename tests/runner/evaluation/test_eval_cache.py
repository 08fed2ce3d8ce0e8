"""The evaluation cache: the same weights, task and settings are answered from the registry; any change evaluates.

One real evaluation (ARC on the bundled sample plus a custom task, on the tiny model) shows a hit gives back the
very outcome; the invalidation tests stand a counting fake in for lm-eval, since what they check is which
benchmarks are sent to it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tunelab.runner.evaluation.cache as eval_cache
from tunelab.experiments.schema import CustomTask, EvalSection
from tunelab.registry.db import default_url, open_registry
from tunelab.registry.roots import Roots
from tunelab.registry.scores import Score
from tunelab.runner.evaluation.cache import evaluate_cached, model_digest, model_files
from tunelab.runner.evaluation.harness import EvalOutcome
from tunelab.runner.evaluation.leaderboard import resolve_benchmarks_dir
from tunelab.runner.evaluation.planning import plan_tasks

from tests.helpers import fake_hub_model, fill_first_revision, invoke, invoke_json, write_spec, write_task_dir

REPO_ROOT = Path(__file__).resolve().parents[3]

SAMPLE = REPO_ROOT / "examples" / "benchmarks"
SEED = 1234
CAPITALS = [
    {"question": "What is the capital of France?", "choices": ["Paris", "Rome", "Madrid"], "answer": 0},
    {"question": "What is the capital of Italy?", "choices": ["Berlin", "Rome", "Lisbon"], "answer": 1},
    {"question": "What is the capital of Spain?", "choices": ["Madrid", "Vienna", "Oslo"], "answer": 0},
    {"question": "What is the capital of Norway?", "choices": ["Dublin", "Oslo", "Warsaw"], "answer": 1},
]


def _write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def sqlite_registry(tmp_path):
    registry = open_registry(default_url(tmp_path / "home"))
    yield registry
    registry.engine.dispose()


@pytest.fixture
def project(tmp_path) -> Path:
    """A working directory with a copy of the benchmark sample and a custom task."""
    shutil.copytree(SAMPLE, tmp_path / "bench")
    _write_rows(tmp_path / "capitals.jsonl", CAPITALS)
    return tmp_path


def _settings(**changes) -> EvalSection:
    values = {
        "tasks": ["arc_challenge"],
        "limit": 2,
        "benchmarks_dir": "bench",
        "batch_size": 4,
        "custom": [CustomTask(name="capitals", path="capitals.jsonl", num_fewshot=1)],
    }
    return EvalSection(**(values | changes))


def _never():
    raise AssertionError("the model was loaded for an evaluation the cache should have answered")


# ---------------------------------------------------------------- a real hit


@pytest.mark.slow
def test_the_same_evaluation_twice_is_answered_from_the_cache(tiny_model_dir, sqlite_registry, project, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loads = []

    def load():
        loads.append(1)
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)

    digest = model_digest([tiny_model_dir], sqlite_registry)
    kwargs = {"workdir": project / "work", "base_dir": project, "seed": SEED, "dtype": "float32"}
    first = evaluate_cached(sqlite_registry, load, digest, _settings(), **kwargs)
    assert loads == [1] and first.cached == ()
    assert [s.task for s in first.scores] == ["arc_challenge", "capitals"]

    messages: list[str] = []
    monkeypatch.setattr(eval_cache, "evaluate", lambda *a, **k: pytest.fail("lm-eval ran on a cache hit"))
    second = evaluate_cached(sqlite_registry, _never, digest, _settings(), progress=messages.append, **kwargs)
    assert second.cached == ("arc_challenge", "capitals")
    assert second.scores == first.scores
    assert second.samples == first.samples
    assert second.fingerprint == first.fingerprint
    assert messages[0].startswith("arc_challenge: cached (acc_norm = ")


# ---------------------------------------------------------------- what invalidates (a fake lm-eval counts calls)


class _Calls(list):
    def __init__(self) -> None:
        super().__init__()
        self.devices: list[str | None] = []


@pytest.fixture
def fake_lm_eval(monkeypatch):
    """Stands in for runner/evaluation/harness.py evaluate; records the benchmarks each call was asked for (and, in
    `calls.devices`, the device it was told to evaluate on)."""
    calls = _Calls()
    devices = calls.devices

    def fake(model, tokenizer, settings, *, workdir, base_dir, seed, dtype, device=None, progress=None,
             should_stop=None):
        bench = resolve_benchmarks_dir(settings, base_dir, {})
        plans = plan_tasks(settings, benchmarks_dir=bench, base_dir=base_dir, out_dir=Path(workdir) / "fake")
        calls.append([p.name for p in plans])
        devices.append(device)
        scores = [
            Score(task=p.name, metric="acc", value=0.25 * len(calls), stderr=None,
                  num_fewshot=p.tasks[0].num_fewshot, n_samples=2, task_group=None, comparable=False)
            for p in plans
        ]  # fmt: skip
        samples = {p.name: [{"doc_id": 0, "target": 0, "pick": 0, "correct": True, "score": 1.0}] for p in plans}
        return EvalOutcome(scores, "fake", {"tasks": {p.name: {"calls": len(calls)} for p in plans}}, samples)

    monkeypatch.setattr(eval_cache, "evaluate", fake)
    return calls


def _run(registry, project: Path, settings: EvalSection, *, model: Path, dtype: str = "float32", seed: int = SEED,
         device: str = "cpu", **kwargs) -> EvalOutcome:
    digest = model_digest([model], registry)
    return evaluate_cached(registry, lambda: (None, None), digest, settings, workdir=project / "work",
                           base_dir=project, seed=seed, dtype=dtype, device=device, **kwargs)


def _perturbed_copy(model_dir: Path, target: Path) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, target)
    tensors = load_file(target / "model.safetensors")
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    return target


def _edit_rows(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows[0]["question"] += " (edited)"
    _write_rows(path, rows)


CHANGES = {
    "weights": lambda p, m: ({}, {"model": _perturbed_copy(m, p / "perturbed")}),
    "task data": lambda p, m: (_edit_rows(p / "bench" / "arc_challenge" / "test.jsonl") or {}, {}),
    "custom task data": lambda p, m: (_edit_rows(p / "capitals.jsonl") or {}, {}),
    "num_fewshot": lambda p, m: ({"custom": [CustomTask(name="capitals", path="capitals.jsonl", num_fewshot=2)]}, {}),
    "limit": lambda p, m: ({"limit": 3}, {}),
    "batch size": lambda p, m: ({"batch_size": 2}, {}),
    "dtype": lambda p, m: ({}, {"dtype": "bfloat16"}),
    "device": lambda p, m: ({}, {"device": "cuda"}),
    "seed": lambda p, m: ({}, {"seed": SEED + 1}),
    "benchmark shots": lambda p, m: ({"num_fewshot": {"arc_challenge": 0}}, {}),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_any_change_of_a_key_evaluates_again(change, tiny_model_dir, sqlite_registry, project, fake_lm_eval):
    first = _run(sqlite_registry, project, _settings(), model=tiny_model_dir)
    again = _run(sqlite_registry, project, _settings(), model=tiny_model_dir)
    assert fake_lm_eval == [["arc_challenge", "capitals"]]
    assert again.cached == ("arc_challenge", "capitals") and again.scores == first.scores

    setting_changes, run_changes = CHANGES[change](project, tiny_model_dir)
    changed = _run(sqlite_registry, project, _settings(**setting_changes), **({"model": tiny_model_dir} | run_changes))
    affected = {"task data": ["arc_challenge"], "custom task data": ["capitals"], "num_fewshot": ["capitals"],
                "benchmark shots": ["arc_challenge"]}
    expected = affected.get(change, ["arc_challenge", "capitals"])
    assert fake_lm_eval[1:] == [expected]
    assert set(changed.cached) == {"arc_challenge", "capitals"} - set(expected)


def test_the_device_is_this_machines_unless_given_and_is_what_evaluates(
    tiny_model_dir, sqlite_registry, project, fake_lm_eval, monkeypatch
):
    digest = model_digest([tiny_model_dir], sqlite_registry)

    def run_here():
        return evaluate_cached(sqlite_registry, lambda: (None, None), digest, _settings(), workdir=project / "work",
                               base_dir=project, seed=SEED, dtype="float32")

    monkeypatch.setattr(eval_cache, "evaluation_device", lambda: "cpu")
    on_cpu = run_here()
    assert fake_lm_eval.devices == ["cpu"] and on_cpu.fingerprint["device"] == "cpu"
    assert run_here().cached == ("arc_challenge", "capitals")
    monkeypatch.setattr(eval_cache, "evaluation_device", lambda: "cuda")  # the same registry, on a GPU machine
    on_gpu = run_here()
    assert fake_lm_eval.devices == ["cpu", "cuda"] and on_gpu.cached == ()
    assert on_gpu.fingerprint["device"] == "cuda"


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


INCLUDE_CHANGES = {
    "its YAML": lambda tasks: _append(tasks / "capitals.yaml", "description: 'Answer the question.'\n"),
    "the YAML it includes": lambda tasks: _append(tasks / "_capitals_template", "# a comment is content too\n"),
    "a Python helper beside it": lambda tasks: _append(tasks / "helpers.py", "# edited\n"),
    "its data file": lambda tasks: _edit_rows(tasks / "data" / "capitals.jsonl"),
    "its shots": lambda tasks: {"num_fewshot": {"capitals_yaml": 1}},
}


@pytest.mark.parametrize("change", list(INCLUDE_CHANGES))
def test_an_include_path_task_is_keyed_by_its_yamls_helpers_data_and_shots(
    change, tiny_model_dir, sqlite_registry, project, fake_lm_eval
):

    tasks = write_task_dir(project)
    settings = {"tasks": ["arc_challenge", "capitals_yaml"], "include_path": "tasks", "custom": []}
    _run(sqlite_registry, project, _settings(**settings), model=tiny_model_dir)
    # Another task written into the directory is no change to this one.
    (tasks / "other.yaml").write_text("task: other\ninclude: _capitals_template\ndataset_path: json\n")
    again = _run(sqlite_registry, project, _settings(**settings), model=tiny_model_dir)
    assert again.cached == ("arc_challenge", "capitals_yaml")

    changes = INCLUDE_CHANGES[change](tasks) or {}
    changed = _run(sqlite_registry, project, _settings(**settings | changes), model=tiny_model_dir)
    assert fake_lm_eval == [["arc_challenge", "capitals_yaml"], ["capitals_yaml"]]
    assert changed.cached == ("arc_challenge",)


def test_the_lm_eval_version_is_part_of_the_key(tiny_model_dir, sqlite_registry, project, fake_lm_eval, monkeypatch):
    _run(sqlite_registry, project, _settings(), model=tiny_model_dir)
    monkeypatch.setattr(eval_cache, "lm_eval_version", lambda: "0.4.99")
    upgraded = _run(sqlite_registry, project, _settings(), model=tiny_model_dir)
    assert len(fake_lm_eval) == 2 and upgraded.cached == ()
    assert upgraded.lm_eval_version == "0.4.99"


def test_a_new_task_is_evaluated_alone_and_results_keep_the_requested_order(
    tiny_model_dir, sqlite_registry, project, fake_lm_eval
):
    _run(sqlite_registry, project, _settings(), model=tiny_model_dir)
    wider = _run(sqlite_registry, project, _settings(tasks=["hellaswag", "arc_challenge"]), model=tiny_model_dir)
    assert fake_lm_eval[1:] == [["hellaswag"]]
    assert [s.task for s in wider.scores] == ["hellaswag", "arc_challenge", "capitals"]
    assert list(wider.fingerprint["tasks"]) == ["hellaswag", "arc_challenge", "capitals"]
    assert wider.fingerprint["tasks"]["arc_challenge"] == {"calls": 1}  # from the first evaluation
    assert wider.cached == ("arc_challenge", "capitals")


def test_refresh_evaluates_again_and_replaces_the_entry(tiny_model_dir, sqlite_registry, project, fake_lm_eval):
    _run(sqlite_registry, project, _settings(), model=tiny_model_dir)
    refreshed = _run(sqlite_registry, project, _settings(), model=tiny_model_dir, refresh=True)
    assert len(fake_lm_eval) == 2 and refreshed.cached == ()
    after = _run(sqlite_registry, project, _settings(), model=tiny_model_dir)
    assert after.scores == refreshed.scores and after.cached == ("arc_challenge", "capitals")


def test_without_a_digest_nothing_is_cached(tiny_model_dir, sqlite_registry, project, fake_lm_eval):
    for _ in range(2):
        evaluate_cached(sqlite_registry, lambda: (None, None), None, _settings(), workdir=project / "w",
                        base_dir=project, seed=SEED, dtype="float32")
    assert len(fake_lm_eval) == 2


# ---------------------------------------------------------------- model digests


def test_model_digest_is_by_content_and_counts_the_adapter(tiny_model_dir, tmp_path, sqlite_registry):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert model_digest([copy]) == model_digest([tiny_model_dir]) == model_digest([tiny_model_dir], sqlite_registry)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"not really, but content all the same")
    (adapter / "adapter_config.json").write_text("{}")
    assert model_digest([tiny_model_dir, adapter]) != model_digest([tiny_model_dir])
    (copy / "tokenizer_config.json").write_text("{}")  # the tokenizer changes scores too
    assert model_digest([copy]) != model_digest([tiny_model_dir])
    assert {p.name for p in model_files(tiny_model_dir)} >= {"model.safetensors", "config.json", "tokenizer.json"}


def test_file_digests_are_remembered_until_the_file_changes(tiny_model_dir, tmp_path, sqlite_registry, monkeypatch):
    import os

    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    first = model_digest([copy], sqlite_registry)
    reads: list[str] = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        reads.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert model_digest([copy], sqlite_registry) == first
    assert reads == []  # every file's digest came from the registry
    weights = copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert model_digest([copy], sqlite_registry) == first
    assert reads == ["model.safetensors"]  # touched: hashed again


def test_a_directory_without_weights_is_an_error(tmp_path):
    from tunelab.runner.errors import EvaluationError

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EvaluationError, match="no model weights"):
        model_digest([tmp_path])


# ---------------------------------------------------------------- storage, on every registry backend


def test_cache_entries_round_trip_and_a_second_writer_is_harmless(registry):
    from tunelab.registry.queries import cached_evaluations
    from tunelab.registry.recording import record_cached_evaluation

    payload = {"scores": [{"task": "arc_challenge", "value": 0.1 + 0.2}], "samples": {}, "fingerprint": {}}
    entry = {"key": "k" * 64, "task": "arc_challenge", "model_digest": "m" * 64, "lm_eval_version": "0.4.13"}
    assert record_cached_evaluation(registry, payload=payload, **entry) is True
    assert record_cached_evaluation(registry, payload={"other": 1}, **entry) is False
    assert cached_evaluations(registry, ["k" * 64, "absent"]) == {"k" * 64: payload}


# ---------------------------------------------------------------- tunelab eval TARGET


def _eval_json(home: Path, *args: str) -> dict:
    result = invoke(home, "eval", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{"):])


@pytest.mark.slow
def test_eval_of_a_directory_is_recorded_with_no_run_and_is_cached_the_second_time(tiny_model_dir, tmp_path):
    from tunelab.registry.queries import model_evaluations, run_scores
    from tunelab.reports.leaderboard import build_leaderboard

    home = tmp_path / "home"
    _write_rows(tmp_path / "capitals.jsonl", CAPITALS)
    args = (str(tiny_model_dir), "--tasks", "arc_challenge", "--limit", "2", "--benchmarks-dir", str(SAMPLE),
            "--custom", f"capitals={tmp_path / 'capitals.jsonl'}", "--batch-size", "4")
    first = _eval_json(home, *args)
    assert (first["model_name"], first["run_id"], first["recorded"], first["cached"]) == (
        str(tiny_model_dir), None, True, [])
    assert [s["task"] for s in first["scores"]] == ["arc_challenge", "capitals"]
    assert first["model_digest"] == model_digest([tiny_model_dir])

    second = _eval_json(home, *args)
    assert second["cached"] == ["arc_challenge", "capitals"] and second["recorded"] is False
    assert second["scores"] == first["scores"]

    registry = open_registry(default_url(home))
    (evaluation,) = model_evaluations(registry)
    assert (evaluation.model_name, evaluation.run_id, evaluation.model_digest) == (
        str(tiny_model_dir), None, first["model_digest"])
    assert evaluation.eval_key == first["eval_key"]
    assert {s.task: s.value for s in evaluation.scores} == {s["task"]: s["value"] for s in first["scores"]}
    assert all(s.model_kind == "eval" for s in evaluation.scores)
    # Scores of no run are not any run's; the leaderboard shows the model as a row of its own.
    assert run_scores(registry) == {}
    (row,) = build_leaderboard(registry).rows
    assert (row.kind, row.label, row.run_id) == ("eval", str(tiny_model_dir), None)


def _lora_run(tiny_model_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A submitted run whose final/ holds a LoRA adapter over the tiny model, as training leaves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home = tmp_path / "home"
    spec = write_spec(tmp_path / "lora.toml", name="lora-eval", model_dir=tiny_model_dir)
    (submitted,) = invoke_json(home, "submit", str(spec))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    final = home / "runs" / str(submitted["run_id"]) / "final"
    model.save_pretrained(final)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(final)
    return home, final


@pytest.mark.slow
def test_eval_of_a_run_uses_its_settings_base_and_adapter_and_records_under_the_run(tiny_model_dir, tmp_path):
    from tunelab.registry.queries import run_detail
    from tunelab.runner.evaluation.targets import trained_model_digest

    home, final = _lora_run(tiny_model_dir, tmp_path)
    done = _eval_json(home, "run:1", "--quiet")
    assert (done["model_name"], done["run_id"], done["recorded"]) == ("run:1", 1, True)
    # The run's own [eval]: ARC at limit 2 plus its custom task, at its seed.
    assert [(s["task"], s["limit"]) for s in done["scores"]] == [("arc_challenge", 2), ("capitals", 2)]
    registry = open_registry(default_url(home))
    # The worker hashes a run's weights the same way, so a run's own evaluation is what `tunelab eval` finds.
    assert done["model_digest"] == trained_model_digest(registry, final, base=str(tiny_model_dir), workdir=tmp_path)
    assert done["model_digest"] != model_digest([tiny_model_dir])  # the adapter counts
    assert {s.model_kind for s in run_detail(registry, 1).scores} == {"eval"}

    again = _eval_json(home, "1")
    assert again["cached"] == ["arc_challenge", "capitals"] and again["scores"] == done["scores"]


def test_settings_key_is_the_workers_eval_key(tiny_model_dir, tmp_path):
    from tunelab.experiments.loader import load_spec
    from tunelab.runner.evaluation.targets import settings_key
    from tunelab.runner.execute import eval_key

    spec = load_spec(write_spec(tmp_path / "s.toml", name="k", model_dir=tiny_model_dir)).spec
    assert settings_key(spec.eval, dtype=spec.model.dtype, seed=spec.experiment.seed,
                        lm_eval_version="0.4.13") == eval_key(spec, "0.4.13")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run:99"], "no run with id 99"),
        (["./nowhere"], "model directory .*nowhere does not exist"),
        (["some-org/not-cached-model"], "not in the local cache and hub access is off"),
        (["{model}", "--custom", "capitals"], "expected NAME=PATH"),
        (["{model}", "--tasks", "gsm8k"], "unknown eval task"),
    ],
)
def test_eval_errors_are_one_line(args, message, tiny_model_dir, tmp_path, monkeypatch):
    import re

    from click.testing import CliRunner

    from tunelab.cli import cli

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{model}", str(tiny_model_dir)) for a in args]
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "home"), "eval", *args])
    assert result.exit_code in (1, 2) and not isinstance(result.exception, Exception)  # usage error or one line
    assert re.search(message, result.output), result.output
    assert "Traceback" not in result.output


def test_eval_of_a_run_without_final_weights_says_so(tiny_model_dir, tmp_path):
    home = tmp_path / "home"
    invoke_json(home, "submit", str(write_spec(tmp_path / "s.toml", name="q", model_dir=tiny_model_dir)))
    result = invoke(home, "eval", "1")
    assert result.exit_code == 1
    assert "run 1 has no final weights" in result.output and "(status queued)" in result.output


def test_migration_0004_keeps_scores_allows_runless_ones_and_downgrades(empty_registry_url):
    from alembic import command
    from sqlalchemy import text
    from tunelab.registry.db import _alembic_config, current_revision, make_engine, upgrade

    engine = make_engine(empty_registry_url)
    upgrade(engine, "0003")
    fill_first_revision(engine)
    upgrade(engine, "0004")
    runless = ("INSERT INTO evalresult (run_id, model_kind, model_name, task, metric, value, num_fewshot, \"limit\", "
               "comparable, lm_eval_version, fingerprint_json, created_at, model_digest) VALUES (NULL, 'eval', "
               "'org/model', 'arc_challenge', 'acc_norm', 0.4, 25, 0, :t, '0.4.13', '{}', '2026-01-01', 'd')")
    with engine.begin() as c:
        c.execute(text(runless), {"t": True})
        rows = c.execute(text("SELECT run_id, model_digest FROM evalresult ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, None), (None, "d")]
    with engine.connect() as connection, connection.begin():
        command.downgrade(_alembic_config(engine, connection), "0003")
    assert current_revision(engine) == "0003"
    with engine.connect() as c:  # the run's score stays; the one of no run cannot
        assert [tuple(r) for r in c.execute(text("SELECT run_id, value FROM evalresult")).all()] == [(1, 0.31)]
    engine.dispose()


def test_a_hub_id_resolves_to_its_cached_snapshot_offline(tiny_model_dir, tmp_path, sqlite_registry):
    from tunelab.runner.evaluate import resolve_target
    from tunelab.runner.evaluation.targets import EvalTargetError

    environ = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    with pytest.raises(EvalTargetError, match="not in the local cache and hub access is off"):
        resolve_target(sqlite_registry, "some-org/tiny", roots=Roots(tmp_path), cwd=tmp_path, environ=environ)
    fake_hub_model(tmp_path / "hf" / "hub", "some-org/tiny", tiny_model_dir)
    source = resolve_target(sqlite_registry, "some-org/tiny", roots=Roots(tmp_path), cwd=tmp_path, environ=environ)
    assert (source.label, source.adapter_dir, source.run_id) == ("some-org/tiny", None, None)
    assert model_digest(source.directories) == model_digest([tiny_model_dir])


def test_hidden_files_of_a_local_dataset_directory_are_not_data(tmp_path):
    from tunelab.runner.evaluation.include_path import data_files_under

    (tmp_path / "test.jsonl").write_text("{}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.jsonl").write_text("{}\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "index").write_text("changes with every git status")
    (tmp_path / ".test.jsonl.swp").write_text("editor")
    assert [p.relative_to(tmp_path).as_posix() for p in data_files_under(tmp_path)] == ["sub/more.jsonl", "test.jsonl"]
