# Sourced on the GPU machine by scripts/gpu_check.sh and scripts/gpu_experiments.sh: unpacks
# .gpu/ (made here by scripts/pack_device.sh) and points pt at the machine's PyTorch.
mkdir -p /tmp/pt-gpu && tar -C /tmp/pt-gpu -xJf .gpu/bin.tar.xz
export PT_DATA=/tmp/pt-data
if [[ ! -d $PT_DATA ]]; then
  mkdir -p "$PT_DATA" && cp -r .gpu/data/. "$PT_DATA/"
  find "$PT_DATA" -name '*.xz' -exec xz -d {} +
fi
export LIBTORCH="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
export PT_BIN=/tmp/pt-gpu/bin/pt PT_PLUGIN_PATH=/tmp/pt-gpu/bin PYTHONUNBUFFERED=1
export PATH="/tmp/pt-gpu/bin:$PATH"
export RUNS="${OUT:-/tmp}/runs"
mkdir -p "$RUNS"
# Wall seconds per step of a run after its first logged line (from metrics.jsonl), on stdout;
# the run's last training line on stderr.
step_time() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
train = [r for r in rows if "step_time_s" in r]
first, last = train[0], train[-1]
per_step = (last["wall_time"] - first["wall_time"]) / max(1, last["step"] - first["step"])
print(f"{per_step:.5f}")
print(f"{sys.argv[1]}: {1000 * per_step:.1f} ms/step; last:",
      {k: round(v, 4) if isinstance(v, float) else v for k, v in last.items() if k != "wall_time"}, file=sys.stderr)
PY
}
# Named evaluation results of a finished run (its summary.json), one line each.
results() {
  python3 - "$@" <<'PY'
import json, sys
for run in sys.argv[1:]:
    try:
        s = json.load(open(run + "/summary.json"))
    except OSError as e:
        print(f"{run}: no summary ({e})"); continue
    pick = lambda m: m.get("accuracy", m.get("mlm_accuracy", float("nan")))
    evals = {k: round(pick(v["metrics"]), 4) for k, v in s.get("evals", {}).items()}
    print(f"{run}: step {s.get('step')} ({s.get('stop')}), {s.get('seconds', 0):.0f} s, last loss {s.get('last_loss')}, {evals}")
PY
}
# Runs a command with a time limit ($LIMIT, default 120 s), saying how long it took.
t() { echo "== $*"; local s=$SECONDS; timeout "${LIMIT:-120}" "$@" || echo "(failed or timed out: $*)"; echo "   ($((SECONDS - s)) s)"; }
# Each run's device_syncs_per_step (the waits for the GPU inside its steps, a plugin's included,
# counted through libtorch's sync debug mode; `pt doctor` checks that one read counts) per log
# line; fails when a line after the first (which holds the warm-up) is above $MAX_SYNCS
# (default 0.1, one wait in ten steps: a step that reads nothing has 0).
syncs() {
  python3 - "$@" <<'PY'
import json, os, sys
limit, failed = float(os.environ.get("MAX_SYNCS", "0.1")), 0
for run in sys.argv[1:]:
    try:
        rows = [json.loads(l) for l in open(run + "/metrics.jsonl")]
    except OSError as e:
        print(f"{run}: no metrics ({e})  FAIL"); failed += 1; continue
    values = [r["device_syncs_per_step"] for r in rows if "device_syncs_per_step" in r]
    if not values:
        print(f"{run}: no device_syncs_per_step (not on CUDA?)  FAIL"); failed += 1; continue
    worst = max(values[1:] or values)
    print(f"{run}: device syncs per step by log line {values}; worst after the first {worst}"
          + ("  FAIL" if worst > limit else "  ok"))
    failed += worst > limit
sys.exit(1 if failed else 0)
PY
}
