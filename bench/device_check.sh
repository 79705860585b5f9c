#!/usr/bin/env bash
# On a machine with a GPU and the project installed: does everything work there?
#
#     bash bench/device_check.sh            # from the repository root
#     PYTHON=.venv/bin/python SKIP="suite" bash bench/device_check.sh
#     WHEELS=.device-wheels bash bench/device_check.sh   # offline: install prefuse first
#
# With WHEELS (a folder that bench/device_wheels.sh filled), prefuse is first installed
# into $PYTHON's environment from that folder alone, over the torch it already has.
# Steps (each prints PASS or FAIL and its seconds; logs go to $LOGS, default a temp dir):
#   install   (with WHEELS only) pip install --no-index from WHEELS
#   suite     the test suite, with CUDA present
#   run       a short `prefuse run --device cuda` (its metrics.json must say cuda)
#   bf16      the same run with --precision bf16
#   torchrun  a 1-GPU torchrun of the same run
#   predict   the GPU-trained model predicting on the CPU
#   cost      bench/cost.py --device cuda (MulT's and the simple network's s/epoch)
#   ablation  the default built-in ablation (3 seeds, 4 arms) on the GPU with --jobs $JOBS
# SKIP lists steps to leave out. The exit status is the number of failed steps.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
JOBS=${JOBS:-8}
LOGS=${LOGS:-$(mktemp -d)}
SKIP=${SKIP:-}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
failed=0
TINY=(--seeds 0 --epochs 6 --pretrain-epochs 2 --width 16
      --set data.synthetic.train=480 --set data.synthetic.valid=120 --set data.synthetic.test=240)

step() {  # step NAME COMMAND...: run it, log it, print the verdict
    local name=$1; shift
    if [[ " $SKIP " == *" $name "* ]]; then echo "SKIP  $name"; return; fi
    local start=$SECONDS
    if "$@" >"$LOGS/$name.log" 2>&1; then
        echo "PASS  $name  ($((SECONDS - start)) s)"
    else
        echo "FAIL  $name  ($((SECONDS - start)) s; log: $LOGS/$name.log)"
        tail -n 15 "$LOGS/$name.log" | sed 's/^/      /'
        failed=$((failed + 1))
    fi
}

on_cuda() {  # on_cuda RUN_DIR: every arm of the run trained on a GPU
    "$PYTHON" - "$1" <<'PY'
import json, sys
summary = json.load(open(f"{sys.argv[1]}/metrics.json"))
devices = {arm: entry["device"] for arm, entry in summary["arms"].items()}
print(summary["runtime"], devices)
assert all(d.startswith("cuda") for d in devices.values()), devices
PY
}

run_on_gpu() { "$PYTHON" -m prefuse run "${TINY[@]}" --device cuda --out "$LOGS/run" && on_cuda "$LOGS/run"; }
run_bf16() {
    "$PYTHON" -m prefuse run "${TINY[@]}" --device cuda --precision bf16 --out "$LOGS/bf16" &&
        on_cuda "$LOGS/bf16"
}
run_torchrun() {
    "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 1 -m prefuse run \
        "${TINY[@]}" --device cuda --out "$LOGS/torchrun" && on_cuda "$LOGS/torchrun"
}
predict_on_cpu() {
    "$PYTHON" -m prefuse data synth --out "$LOGS/synth.npz" --train 480 --valid 120 --test 240 &&
        "$PYTHON" -m prefuse evaluate "$LOGS/run" --data "$LOGS/synth.npz" --device cpu
}

"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.device_count(), 'GPU(s)')"
echo "logs: $LOGS"
if [[ -n "${WHEELS:-}" ]]; then
    step install "$PYTHON" -m pip install --no-index --find-links "$WHEELS" \
        --no-build-isolation -e .
fi
step suite    "$PYTHON" -m pytest -q -x
step run      run_on_gpu
step bf16     run_bf16
step torchrun run_torchrun
step predict  predict_on_cpu
step cost     "$PYTHON" bench/cost.py --device cuda
step ablation "$PYTHON" bench/jobs.py --device cuda --jobs "$JOBS" --busy-jobs
for name in cost ablation; do
    [[ -f "$LOGS/$name.log" ]] && { echo "--- $name"; tail -n 12 "$LOGS/$name.log"; }
done
echo "$failed step(s) failed"
exit "$failed"
