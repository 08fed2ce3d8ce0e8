"""`tunelab doctor`: every queued run's files are checked before any worker starts; what is missing is listed."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from tunelab.experiments.benchmarks import LEADERBOARD
from tunelab.experiments.schema import EvalSection
from tunelab.registry.db import default_url, open_registry
from tunelab.registry.roots import Roots
from tunelab.runner.doctor import check_queued_runs, hub_dataset
from tunelab.runner.errors import EvaluationError
from tunelab.runner.evaluation.planning import plan_tasks, required_local_files

from tests.helpers import REPO_ROOT, fake_hub_model, invoke, invoke_json, queue_unchecked, write_spec, write_task_dir

SAMPLE = REPO_ROOT / "examples" / "benchmarks"


def _doctor(home: Path, *args: str):
    result = invoke(home, "doctor", *args)
    return result.exit_code, result.output


def test_runs_with_everything_in_place_pass(tiny_model_dir, tmp_path):
    home = tmp_path / "home"
    invoke_json(home, "submit", str(write_spec(tmp_path / "a.toml", name="a", model_dir=tiny_model_dir)))
    invoke_json(home, "submit", str(write_spec(tmp_path / "b.toml", name="b", model_dir=tiny_model_dir,
                                               tasks=("arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"))))
    code, output = _doctor(home, "--offline")
    assert code == 0, output
    assert output.splitlines() == ["run 1 a: ok", "run 2 b: ok", "2 queued run(s) checked, 0 with missing files"]
    assert [(c["run_id"], c["ok"], c["problems"]) for c in json.loads(_doctor(home, "--json")[1])] == [
        (1, True, []), (2, True, [])]


def test_everything_missing_is_listed_per_run_and_exits_1(tiny_model_dir, tmp_path):
    home = tmp_path / "home"
    bench = shutil.copytree(SAMPLE, tmp_path / "bench")
    (bench / "mmlu" / "virology" / "dev.jsonl").unlink()
    (bench / "hellaswag" / "validation.jsonl").unlink()
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (model / "tokenizer.json").unlink()
    good = write_spec(tmp_path / "good.toml", name="good", model_dir=tiny_model_dir)
    bad = write_spec(
        tmp_path / "bad.toml", name="bad", model_dir=model, train=tmp_path / "no-such-train.jsonl",
        tasks=("arc_challenge", "hellaswag", "mmlu"),
        extra=f'[[eval.custom]]\nname = "mine"\npath = "{tmp_path / "mine.jsonl"}"\n',
    ).read_text().replace(str(SAMPLE), str(bench))
    (tmp_path / "bad.toml").write_text(bad)
    missing_model = write_spec(tmp_path / "gone.toml", name="gone", model_dir=tmp_path / "gone-model", custom=False)
    invoke_json(home, "submit", str(good))
    # Files that vanished after submit (which refuses a spec whose files are missing).
    for spec in (tmp_path / "bad.toml", missing_model):
        queue_unchecked(home, spec)

    code, output = _doctor(home)
    assert code == 1
    checks = {c["name"]: c for c in json.loads(_doctor(home, "--json")[1])}
    assert checks["good"]["ok"] is True
    assert sorted((p["what"], Path(p["where"]).name) for p in checks["bad"]["problems"]) == [
        ("benchmark data", "dev.jsonl"),
        ("benchmark data", "validation.jsonl"),
        ("custom task", "mine.jsonl"),
        ("tokenizer", "model"),
        ("train data", "no-such-train.jsonl"),
    ]
    assert [(p["what"], p["detail"]) for p in checks["gone"]["problems"]] == [("base model", "directory not found")]
    # The text form names each run and each missing thing on its own line.
    assert "run 2 bad: 5 missing" in output and "run 3 gone: 1 missing" in output
    assert f"  - benchmark data: {bench / 'mmlu' / 'virology' / 'dev.jsonl'} (mmlu: file not found)" in output


def test_no_queued_runs(tmp_path):
    assert _doctor(tmp_path / "home") == (0, "no queued runs\n")


def _hub_spec_run(tmp_path: Path, *, base: str, benchmarks: bool) -> Path:
    home = tmp_path / "home"
    spec = write_spec(tmp_path / "hub.toml", name="hub", model_dir=tmp_path, custom=False)
    text = spec.read_text().replace(f'base = "{tmp_path}"', f'base = "{base}"')
    if not benchmarks:
        text = text.replace(f'benchmarks_dir = "{SAMPLE}"', 'benchmarks_dir = ""')
    spec.write_text(text)
    invoke_json(home, "submit", str(spec))
    return home


def test_hub_models_and_datasets_must_be_cached_offline(tiny_model_dir, tmp_path):
    home = _hub_spec_run(tmp_path, base="some-org/tiny", benchmarks=False)
    registry = open_registry(default_url(home))
    hf = tmp_path / "hf"
    environ = {"HF_HOME": str(hf)}

    (offline,) = check_queued_runs(registry, Roots(home), offline=True, environ=environ)
    assert [(p.what, p.where) for p in offline.problems] == [
        ("base model", "some-org/tiny"), ("benchmark data", "allenai/ai2_arc")]
    assert "TUNELAB_BENCHMARKS_DIR" in offline.problems[1].detail

    # A hub that answers (a local listening port: tests never reach the network): the worker will download them.
    with socket.create_server(("127.0.0.1", 0)) as hub:
        endpoint = f"http://127.0.0.1:{hub.getsockname()[1]}"
        (online,) = check_queued_runs(registry, Roots(home), offline=False,
                                      environ=environ | {"HF_ENDPOINT": endpoint})
    assert online.ok and len(online.notes) == 2 and "will download" in online.notes[0]

    fake_hub_model(hf / "hub", "some-org/tiny", tiny_model_dir)
    (hf / "hub" / "datasets--allenai--ai2_arc").mkdir(parents=True)
    (cached,) = check_queued_runs(registry, Roots(home), offline=True, environ=environ)
    assert cached.ok, cached.problems


def test_a_hub_snapshot_missing_its_weights_is_reported(tiny_model_dir, tmp_path):
    home = _hub_spec_run(tmp_path, base="some-org/tiny", benchmarks=True)
    hf = tmp_path / "hf"
    fake_hub_model(hf / "hub", "some-org/tiny", tiny_model_dir)
    next((hf / "hub").rglob("model.safetensors")).unlink()
    (check,) = check_queued_runs(open_registry(default_url(home)), Roots(home), offline=True,
                                 environ={"HF_HOME": str(hf)})
    assert [(p.what, p.detail) for p in check.problems] == [("base model", "no weights (*.safetensors or *.bin)")]


def test_the_environment_variable_benchmarks_dir_is_checked_too(tiny_model_dir, tmp_path):
    home = _hub_spec_run(tmp_path, base=str(tiny_model_dir), benchmarks=False)
    (check,) = check_queued_runs(open_registry(default_url(home)), Roots(home), offline=True,
                                 environ={"TUNELAB_BENCHMARKS_DIR": str(tmp_path / "nowhere")})
    assert [(p.what, p.where) for p in check.problems] == [("benchmark data", str(tmp_path / "nowhere"))]


def test_hub_datasets_are_the_official_tasks_own():
    assert [hub_dataset(b) for b in LEADERBOARD] == ["allenai/ai2_arc", "Rowan/hellaswag", "cais/mmlu",
                                                      "truthfulqa/truthful_qa"]


# ---------------------------------------------------------------- tasks of an include_path


def _include_run(tmp_path: Path, monkeypatch, model_dir: Path, *, include_path: str = "tasks",
                 tasks: tuple[str, ...] = ("arc_challenge", "capitals_yaml")) -> Path:
    """A queued run whose [eval] names a task of a YAML directory, submitted from tmp_path."""
    write_task_dir(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative include_path is relative to the directory submit ran in
    spec = write_spec(tmp_path / "inc.toml", name="inc", model_dir=model_dir, tasks=tasks, custom=False)
    spec.write_text(spec.read_text().replace("[eval]\n", f'[eval]\ninclude_path = "{include_path}"\n'))
    # As submit stores it, without its checks: the tests break the task directory as if after the submit.
    queue_unchecked(tmp_path / "home", spec)
    return tmp_path / "home"


def _problems(home: Path, environ: dict | None = None) -> list[tuple[str, str, str]]:
    (check,) = check_queued_runs(open_registry(default_url(home)), Roots(home), offline=True,
                                 environ=environ or {})
    return [(p.what, p.where, p.detail) for p in check.problems]


def test_include_path_tasks_in_place_pass(tiny_model_dir, tmp_path, monkeypatch):
    home = _include_run(tmp_path, monkeypatch, tiny_model_dir)
    code, output = _doctor(home, "--offline")
    assert (code, output.splitlines()[0]) == (0, "run 1 inc: ok")


def test_the_python_files_a_runs_tasks_import_are_listed(tiny_model_dir, tmp_path, monkeypatch):
    home = _include_run(tmp_path, monkeypatch, tiny_model_dir)
    # A second helper, named by the task's own YAML in a subdirectory module (lm-eval: a.b.f is a.b.py).
    tasks = tmp_path / "tasks"
    (tasks / "more.filters.py").write_text("def keep(docs):\n    return docs\n", encoding="utf-8")
    yaml_path = tasks / "capitals.yaml"
    yaml_path.write_text(yaml_path.read_text() + "process_docs: !function more.filters.keep\n", encoding="utf-8")
    (check,) = check_queued_runs(open_registry(default_url(home)), Roots(home), offline=True, environ={})
    # The task's own helper, then the template's (an included YAML names it); nothing of them was imported.
    assert check.python_files == [str((tasks / "more.filters.py").resolve()), str((tasks / "helpers.py").resolve())]
    code, output = _doctor(home, "--offline")
    assert code == 0
    assert f"  imports Python (runs as the worker's user): {(tasks / 'helpers.py').resolve()}" in output.splitlines()


def test_a_missing_include_path_is_reported_and_the_benchmarks_still_checked(tiny_model_dir, tmp_path, monkeypatch):
    home = _include_run(tmp_path, monkeypatch, tiny_model_dir, include_path="no-such-dir",
                        tasks=("arc_challenge", "mmlu_astrology", "capitals_yaml"))
    (include, mmlu) = _problems(home)
    assert include[:2] == ("eval tasks", "no-such-dir")
    assert "no-such-dir (from [eval] include_path) does not exist" in include[2]
    assert mmlu[0] == "eval tasks" and "'mmlu_astrology'" in mmlu[2]


def test_a_task_not_in_the_include_path_is_reported_with_the_tasks_there(tiny_model_dir, tmp_path, monkeypatch):
    home = _include_run(tmp_path, monkeypatch, tiny_model_dir, tasks=("arc_challenge", "capitals_yml"))
    ((what, where, detail),) = _problems(home)
    assert (what, where) == ("eval tasks", "arc_challenge, capitals_yml")
    assert "unknown eval task(s) 'capitals_yml'" in detail and "(its tasks: capitals_yaml)" in detail
    _, output = _doctor(home)
    assert "  - eval tasks: arc_challenge, capitals_yml (unknown eval task(s) 'capitals_yml'" in output


def test_an_include_path_tasks_missing_data_is_reported(tiny_model_dir, tmp_path, monkeypatch):
    home = _include_run(tmp_path, monkeypatch, tiny_model_dir)
    (tmp_path / "tasks" / "data" / "capitals.jsonl").unlink()
    ((what, where, detail),) = _problems(home)
    assert (what, where) == ("eval task data", str(tmp_path / "tasks" / "capitals.yaml"))
    assert "data file data/capitals.jsonl not found" in detail


def test_an_include_path_tasks_hub_dataset_must_be_cached_offline(tiny_model_dir, tmp_path, monkeypatch):
    home = _include_run(tmp_path, monkeypatch, tiny_model_dir)
    task = tmp_path / "tasks" / "capitals.yaml"
    task.write_text("include: _capitals_template\ntask: capitals_yaml\ndataset_path: some-org/capitals\n")
    environ = {"HF_HOME": str(tmp_path / "hf")}
    ((what, where, detail),) = _problems(home, environ)
    assert (what, where) == ("benchmark data", "some-org/capitals")
    assert "capitals_yaml: hub dataset not in the cache" in detail and "local data files" in detail
    (tmp_path / "hf" / "hub" / "datasets--some-org--capitals").mkdir(parents=True)
    assert _problems(home, environ) == []


# ---------------------------------------------------------------- the doctor's file list is the evaluator's


TASKS = ["arc_challenge", "hellaswag", "mmlu_anatomy", "mmlu_virology", "truthfulqa_mc2"]


def test_required_files_are_exactly_what_evaluation_cannot_do_without(tmp_path):
    required = [rel for files in required_local_files(TASKS).values() for rel in files]
    assert len(required) == 2 + 1 + 4 + 1
    minimal = tmp_path / "minimal"
    for rel in required:  # only the required files: planning works
        (minimal / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / rel, minimal / rel)
    plan_tasks(EvalSection(tasks=TASKS), benchmarks_dir=minimal, base_dir=tmp_path, out_dir=tmp_path / "t")
    for rel in required:  # ...and without any one of them it fails, naming that file
        shutil.move(minimal / rel, tmp_path / "aside")
        with pytest.raises(EvaluationError, match=f"{rel} is missing"):
            plan_tasks(EvalSection(tasks=TASKS), benchmarks_dir=minimal, base_dir=tmp_path, out_dir=tmp_path / "t")
        shutil.move(tmp_path / "aside", minimal / rel)


def test_full_mmlu_requires_every_subject():
    files = required_local_files(["mmlu"])["mmlu"]
    assert len(files) == 2 * 57 and "mmlu/virology/dev.jsonl" in files


# ---------------------------------------------------------------- importing a user's copy of the benchmarks


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _user_copy(root: Path) -> Path:
    """The sample, as a user might hold it: hub parquet, a save_to_disk DatasetDict, one MMLU file per split with
    letter answers and a subject column, TruthfulQA in its original {answer: label} form."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    src = root / "src"
    (src / "ARC-Challenge" / "data").mkdir(parents=True)
    for split in ("train", "validation", "test"):
        table = pa.Table.from_pylist(_jsonl(SAMPLE / "arc_challenge" / f"{split}.jsonl"))
        pq.write_table(table, src / "ARC-Challenge" / "data" / f"{split}-00000-of-00001.parquet")
    rows = [dict(r, label=int(r["label"])) for r in _jsonl(SAMPLE / "hellaswag" / "validation.jsonl")]
    DatasetDict({"validation": Dataset.from_list(rows)}).save_to_disk(str(src / "hellaswag"))
    (src / "mmlu").mkdir()
    for split in ("test", "dev", "validation"):
        rows = [dict(r, answer="ABCD"[r["answer"]]) for subject in sorted((SAMPLE / "mmlu").iterdir())
                for r in _jsonl(subject / f"{split}.jsonl")]
        name = "val" if split == "validation" else split
        (src / "mmlu" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    original = [{"question": r["question"],
                 **{k: dict(zip(r[k]["choices"], r[k]["labels"], strict=True)) for k in ("mc1_targets", "mc2_targets")}}
                for r in _jsonl(SAMPLE / "truthfulqa" / "mc_validation.jsonl")]
    (src / "truthful_qa").mkdir()
    (src / "truthful_qa" / "mc_validation.json").write_text(json.dumps(original))
    return src


def test_import_benchmarks_rebuilds_the_official_layout_from_other_formats(tmp_path):
    import subprocess
    import sys

    src = _user_copy(tmp_path)
    dest = tmp_path / "dest"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "import_benchmarks.py"), str(src), str(dest)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*.jsonl"))
    assert sorted(p.relative_to(dest) for p in dest.rglob("*.jsonl")) == expected
    for rel in expected:
        assert _jsonl(dest / rel) == _jsonl(SAMPLE / rel), rel
    # ...so the evaluator takes it as it is.
    assert not [rel for files in required_local_files(["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"])
                .values() for rel in files if not (dest / rel).is_file()]


def test_import_names_the_file_and_row_with_a_missing_column(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("import_benchmarks", REPO_ROOT / "scripts" / "import_benchmarks.py")
    import_benchmarks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(import_benchmarks)
    (tmp_path / "src" / "hellaswag").mkdir(parents=True)
    (tmp_path / "src" / "hellaswag" / "validation.jsonl").write_text(json.dumps({"ctx_a": "a", "label": 0}) + "\n")
    with pytest.raises(import_benchmarks.ImportProblem, match=r"validation row 1: missing column\(s\) activity_label"):
        import_benchmarks.import_benchmarks(tmp_path / "src", tmp_path / "dest")
    with pytest.raises(import_benchmarks.ImportProblem, match="no benchmark directory"):
        import_benchmarks.import_benchmarks(tmp_path / "dest", tmp_path / "dest2")


def test_a_run_needing_more_gpus_than_this_machine_has_is_noted_not_failed(tiny_model_dir, tmp_path):
    from tunelab.registry.db import open_registry
    from tunelab.runner.doctor import check_queued_runs

    home = tmp_path / "home"
    invoke_json(home, "submit", str(write_spec(tmp_path / "g.toml", name="g", model_dir=tiny_model_dir,
                                               extra="[resources]\ngpus = 2\n")))
    registry = open_registry(f"sqlite:///{home / 'registry.db'}")
    (short,) = check_queued_runs(registry, Roots(home), offline=True, gpus_here=lambda: 1)
    assert short.ok and short.notes == [
        "[resources] gpus = 2: this machine has 1 GPU(s); only a worker with 2 will claim the run"]
    (enough,) = check_queued_runs(registry, Roots(home), offline=True, gpus_here=lambda: 2)
    assert enough.ok and enough.notes == []
    code, output = _doctor(home, "--offline")  # this machine: no GPU
    assert code == 0 and "only a worker with 2 will claim the run" in output


# ---------------------------------------------------------------- what another machine cannot see


def _project(tmp_path: Path, model_dir: Path) -> tuple[Path, Path]:
    """A project with its own data and model, whose spec names them by relative paths; and its spec directory."""
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    shutil.copytree(model_dir, project / "model")
    shutil.copy(REPO_ROOT / "examples" / "data" / "capitals_train.jsonl", project / "train.jsonl")
    spec = write_spec(project / "specs" / "rel.toml", name="rel", model_dir=Path("../model"),
                      train="../train.jsonl", custom=False)
    return project, spec


def test_a_worker_machine_is_told_which_paths_of_a_queued_run_it_cannot_see(tiny_model_dir, tmp_path, monkeypatch):
    project, spec = _project(tmp_path, tiny_model_dir)
    home = tmp_path / "home"
    monkeypatch.chdir(project / "specs")
    invoke_json(home, "--project", str(project), "submit", str(spec))
    assert invoke_json(home, "show", "1")["workdir"] == "specs"  # stored relative to the project root

    # The submitting machine, and one that mounts the project elsewhere, see everything.
    (tmp_path / "mnt").symlink_to(project)
    for root in (project, tmp_path / "mnt"):
        seen = invoke(home, "--project", str(root), "doctor", "--offline")
        assert seen.exit_code == 0, seen.output
    # A machine whose project root lacks the files names each of them, as it would look for them.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "specs").mkdir(parents=True)
    checks = json.loads(invoke(home, "--project", str(elsewhere), "doctor", "--offline", "--json").output)
    assert [(p["what"], p["where"]) for p in checks[0]["problems"]] == [
        ("base model", str(elsewhere / "specs" / "../model")),
        ("train data", str(elsewhere / "specs" / "../train.jsonl"))]
    # A machine that names no project root cannot place the run's relative paths at all.
    code, output = _doctor(home, "--offline")
    assert code == 1 and "submit directory: specs (" in output and "set TUNELAB_PROJECT" in output


def test_checkpoints_and_weights_outside_this_machines_artifact_root_are_named(tiny_model_dir, tmp_path):
    from tunelab.registry.recording import record_checkpoint, update_run
    from tunelab.registry.run_state import claim_next, succeed

    home = tmp_path / "home"
    parent = invoke_json(home, "submit", str(write_spec(tmp_path / "p.toml", name="p", model_dir=tiny_model_dir)))
    resumed = invoke_json(home, "submit", str(write_spec(tmp_path / "r.toml", name="r", model_dir=tiny_model_dir)))
    child = write_spec(tmp_path / "c.toml", name="c", model_dir=tiny_model_dir)
    child.write_text(child.read_text().replace(f'base = "{tiny_model_dir}"', f'base = "run:{parent[0]["run_id"]}"'))
    invoke_json(home, "submit", str(child))
    registry = open_registry(default_url(home))
    # The parent finished on machine A; the other run was interrupted there after its checkpoint at step 2.
    storage = tmp_path / "storage"
    (storage / "runs" / "1" / "final").mkdir(parents=True)
    assert claim_next(registry, "a") == 1
    update_run(registry, 1, output_dir="runs/1")
    assert succeed(registry, 1, "a") == "succeeded"
    run_id = resumed[0]["run_id"]
    record_checkpoint(registry, run_id, 2, 0.5, f"runs/{run_id}/checkpoints/checkpoint-2")
    (storage / "runs" / str(run_id) / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (storage / "runs" / str(run_id) / "checkpoints" / "checkpoint-2" / "tunelab-complete.json").write_text(
        '{"step": 2, "loss": 0.5}')
    registry.engine.dispose()

    seen = invoke(home, "--artifacts", str(storage), "doctor", "--offline")
    assert seen.exit_code == 0, seen.output
    checks = {c["name"]: c for c in json.loads(invoke(home, "doctor", "--offline", "--json").output)}
    assert [(p["what"], p["where"]) for p in checks["r"]["problems"]] == [
        ("checkpoints", str(home.absolute() / "runs" / str(run_id) / "checkpoints"))]
    assert "step 2 recorded, none under this machine's artifact root" in checks["r"]["problems"][0]["detail"]
    assert [(p["what"], p["where"]) for p in checks["c"]["problems"]] == [
        ("base model", f"run:1 ({home.absolute() / 'runs' / '1' / 'final'})")]
