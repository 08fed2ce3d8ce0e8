"""Read `tunelab ls --json` on stdin; fail unless every fine-tuned demo run beats its base on `capitals`."""

import json
import subprocess
import sys

runs = json.load(sys.stdin)
ok = True
for run in runs:
    show = json.loads(subprocess.run(["tunelab", "show", str(run["run_id"]), "--json"], check=True,
                                     capture_output=True, text=True).stdout)
    scores = {(s["model_kind"], s["task"]): s["value"] for s in show["scores"] if s["task_group"] is None}
    tuned, base = scores.get(("finetuned", "capitals")), scores.get(("base", "capitals"))
    if tuned is None or base is None:
        print(f"run {run['run_id']} {run['name']}: no capitals scores ({run['status']})")
        ok = False
        continue
    verdict = "beats" if tuned > base else "does NOT beat"
    print(f"run {run['run_id']} {run['name']}: capitals acc {tuned:.3f} {verdict} base {base:.3f}")
    ok = ok and tuned > base
print("leaderboard: leaderboard.html")
sys.exit(0 if ok else 1)
