#!/usr/bin/env bash
# Issue 20 item 9: repeat the 2-rank ZeRO-2/3 resume tests under load until they pass N times in a row
# (default 20), a run fails (its log is kept in stress_two_rank_exits_fail.log), or the time limit ends.
#   bash benchmarks/stress_two_rank_exits.sh [passes=20] [seconds=3600]
# Run a CPU hog beside it for "under load", e.g. `python3 -c "while True: pass" &`.
set -u
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 WANDB_MODE=offline
want=${1:-20}
end=$(( $(date +%s) + ${2:-3600} ))
n=0
while [ "$(date +%s)" -lt "$end" ] && [ "$n" -lt "$want" ]; do
  s=$(date +%s)
  if .venv/bin/python -m pytest -q -p no:cacheprovider \
      "tests/test_resume.py::test_deepspeed_two_ranks_resume_after_sigterm_to_the_same_adapter" > /tmp/stress_last.log 2>&1; then
    n=$((n + 1)); echo "$(date +%T) pass $n ($(( $(date +%s) - s )) s)"
  else
    cp /tmp/stress_last.log stress_two_rank_exits_fail.log
    echo "$(date +%T) FAIL after $n passes in a row; see stress_two_rank_exits_fail.log"; exit 1
  fi
done
echo "$n passes in a row"
[ "$n" -ge "$want" ]
