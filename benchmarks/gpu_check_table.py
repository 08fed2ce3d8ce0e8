"""The short text table of benchmarks/gpu_check.py, from the figures it writes as JSON."""

from __future__ import annotations

from typing import Any


def _num(value: float | int | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _pair(ours: float | None, plain: float | None, spec: str = ",.0f") -> str:
    return f"{_num(ours, spec)} / {_num(plain, spec)}"


def render_table(results: dict[str, Any]) -> str:
    parts = results.get("parts", {})
    lines = [_heading(results)]
    for name, render in (("training", _training), ("resume", _resume), ("eval", _eval), ("doctor", _doctor)):
        part = parts.get(name)
        if part is None:
            continue
        lines.append("")
        if part.get("status") == "running":
            lines.append(f"{name}: did not finish (the check was cut short)")
            continue
        if part.get("status") == "failed" and not (name == "training" and part.get("cases")):
            lines.append(f"{name}: FAILED: {part.get('error')}")
            continue
        lines += render(part)
    status = ", ".join(f"{name} {part.get('status')} ({part.get('seconds', 0):.0f} s)" for name, part in parts.items())
    lines += ["", f"parts: {status}; wall {results.get('wall_seconds', 0):.0f} s"]
    return "\n".join(lines)


def _heading(results: dict[str, Any]) -> str:
    machine, model = results.get("machine", {}), results.get("parts", {}).get("model", {})
    gpus = ", ".join(f"{g['name']} ({g['memory_total']})" for g in machine.get("gpus", [])) or "no GPU"
    built = (f"{model['parameters'] / 1e6:.1f}M-parameter Llama built in {model['build_seconds']:.1f} s"
             if "parameters" in model else f"model: {model.get('status')} {model.get('error', '')}")
    return (f"tunelab GPU check on {machine.get('device')}: {gpus}; torch {machine.get('torch')} "
            f"(CUDA {machine.get('torch_cuda')}); {built}")


def _training(part: dict[str, Any]) -> list[str]:
    lines = [f"training: {part['steps']} steps x {part['batch_size']} rows x {part['max_seq_len']} tokens "
             f"({part['tokens_per_run']:,} tokens per run); tunelab / plain Trainer script",
             f"{'case':<18} {'tunelab tok/s':>13} {'plain tok/s':>12} {'ratio':>6}  {'peak MiB (torch)':>19}  "
             f"{'nvidia-smi MiB':>17}  {'max RSS MiB':>17}  {'final loss':>17}"]
    for case in part["cases"]:
        if case.get("status") != "ok":
            lines.append(f"{case['case']:<18} " + (f"FAILED: {case['error']}" if "error" in case else "did not finish"))
            continue
        ours, plain = case["tunelab"], case["plain"]
        flag = "" if case["meets_target"] else "  (below the 0.97 target)"
        lines.append(
            f"{case['case']:<18} {_num(ours['tokens_per_second']):>13} {_num(plain['tokens_per_second']):>12} "
            f"{case['ratio']:>6.3f}  {_pair(ours['peak_allocated_mib'], plain['peak_allocated_mib']):>19}  "
            f"{_pair(ours['nvidia_smi_peak_mib'], plain['nvidia_smi_peak_mib']):>17}  "
            f"{_pair(ours['max_rss_mib'], plain['max_rss_mib']):>17}  "
            f"{_pair(ours['final_loss'], plain['final_loss'], '.4f'):>17}{flag}")
    for skipped in part["skipped"]:
        lines.append(f"skipped {skipped['case']}: {skipped['reason']}")
    return lines


def _resume(part: dict[str, Any]) -> list[str]:
    settings = part.get("settings")
    how = (", ".join(f"{k}={v}" for k, v in settings.items()) if isinstance(settings, dict) else settings)
    weights = part.get("weights", {})
    verdict = ("bit-identical" if weights.get("bit_identical")
               else f"{weights.get('tensors_differing')} of {weights.get('tensors')} tensors differ, max |diff| "
                    f"{weights.get('max_abs_difference'):.3g}") if weights else "-"
    return [f"resume ({part['case']}, {part['steps']} steps, checkpoint every {part['save_every']}; settings: {how}):",
            f"  SIGKILL after step {part['last_step_before_kill']} (checkpoint {part['checkpoint_at_kill']}): "
            f"{part['steps_redone']} step(s) redone; the new worker said: {part.get('worker_said')!r}",
            f"  final weights against an uninterrupted run: {verdict}; loss curve identical: "
            f"{part.get('loss_curve_identical')}; each step logged once: {part.get('each_step_logged_once')}",
            *[f"  nondeterministic op: {warning}" for warning in part.get("nondeterminism_warnings", [])]]


def _eval(part: dict[str, Any]) -> list[str]:
    sizes = part["batch_sizes"]
    timing = "; ".join(
        f"batch {size}: {entry['wall_seconds']:.1f} s"
        + (f" (lm-eval chose {', '.join(map(str, entry['detected_batch_sizes']))})"
           if entry["detected_batch_sizes"] else "")
        for size, entry in sizes.items())
    differ = ("identical" if part["scores_identical"]
              else f"differ (max {part['max_score_difference']:.3g}: {', '.join(part['tasks_differing'][:6])})")
    report = part["report"]
    return [f"eval (run {part['run_id']}; {', '.join(part['tasks'])}; limit {part['limit']}): {timing}",
            f"  scores at batch 1 and auto: {differ}; fingerprint batch sizes: "
            f"{', '.join(part['fingerprint_batch_sizes'])}; leaderboard stars the mix as not comparable: "
            f"{report['marks_mixed_settings']}"]


def _doctor(part: dict[str, Any]) -> list[str]:
    bad = [run for run in part["runs"] if not run["ok"]]
    lines = [f"doctor: {part['queued']} queued run(s), exit {part['exit_code']}, "
             + (f"{len(bad)} with missing files" if bad else "all files present")
             + ("" if "cuda_only_specs_flagged" not in part
                else f"; CUDA-only specs flagged on this CPU-only machine: {part['cuda_only_specs_flagged']}")]
    for run in part["runs"]:
        problems = "; ".join(f"{p['what']}: {p['where']} ({p['detail']})" for p in run["problems"])
        lines.append(f"  run {run['run_id']} {run['name']}: {'ok' if run['ok'] else problems}"
                     + "".join(f"; note: {note}" for note in run["notes"]))
    return lines
