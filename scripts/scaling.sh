#!/usr/bin/env bash
# Data-parallel NeCo training on this machine: one process with T threads against T MPI ranks
# with one thread each, on the same global batch (docs/SCALING.md).
#   scripts/scaling.sh [ranks] [rounds] [steps]      (defaults: 2 ranks, 3 rounds, 5 steps)
#
# Model: the embedded DINOv2 ViT-S/14, every block trainable; NeCo's CPU crops (2 × 224 + 4 × 98),
# queue references, global batch 4 (2 images per rank with 2 ranks), the sample photos. Each
# configuration runs `steps` steps in its own run folder; the first step (buffer allocation, page
# faults) is dropped and the median of the others is taken from log.csv. The two configurations
# take turns, `rounds` times. Needs openmpi-bin (scripts/setup.sh --test installs it).
# Last line: SCALING ranks=N single_step_s=… mpi_step_s=… speedup=… allreduce_s=… allreduce_mb=…
set -euo pipefail
cd "$(dirname "$0")/.."
RANKS=${1:-2}
ROUNDS=${2:-3}
STEPS=${3:-5}
scripts/setup.sh >/dev/null
swift build -c release --product neco >/dev/null
NECO=.build/release/neco
PHOTOS=${NECO_CACHE:-$HOME/.cache/neco}/photos
command -v mpirun >/dev/null || { echo "scaling: mpirun missing (apt-get install openmpi-bin)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
ARGS=(--data "$PHOTOS" --batch 4 --steps "$STEPS" --global-size 224 --local-size 98 --references queue
      --checkpoint-every 0 --quiet --drop-path 0)
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column() {  # column LOG NAME: the values of NAME from step 2 on
  awk -F, -v n="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == n) c = i; next } NR > 2 { print $c }' "$1"
}
for r in $(seq "$ROUNDS"); do
  "$NECO" train "${ARGS[@]}" --threads "$RANKS" --out "$tmp/single$r" >/dev/null
  mpirun -np "$RANKS" --oversubscribe --bind-to core "$NECO" train "${ARGS[@]}" --threads 1 --out "$tmp/mpi$r" >/dev/null
  s=$(column "$tmp/single$r/log.csv" step_s | median); m=$(column "$tmp/mpi$r/log.csv" step_s | median)
  echo "round $r/$ROUNDS: one process × $RANKS threads $s s/step; $RANKS ranks × 1 thread $m s/step"
done
single=$(for r in $(seq "$ROUNDS"); do column "$tmp/single$r/log.csv" step_s; done | median)
mpi=$(for r in $(seq "$ROUNDS"); do column "$tmp/mpi$r/log.csv" step_s; done | median)
allreduce=$(for r in $(seq "$ROUNDS"); do column "$tmp/mpi$r/log.csv" allreduce_s; done | median)
for phase in data_s teacher_forward_s student_forward_s neco_loss_s backward_s optimizer_s allreduce_s; do
  printf '  %-18s one process %7.3f s   %d ranks %7.3f s\n' "$phase" \
    "$(for r in $(seq "$ROUNDS"); do column "$tmp/single$r/log.csv" $phase; done | median)" "$RANKS" \
    "$(for r in $(seq "$ROUNDS"); do column "$tmp/mpi$r/log.csv" $phase; done | median)"
done
params=$("$NECO" train "${ARGS[@]}" --steps 1 --threads "$RANKS" --out "$tmp/count" 2>/dev/null | sed -n 's/.*trainable \([0-9]*\) parameters.*/\1/p')
echo "SCALING ranks=$RANKS single_step_s=$single mpi_step_s=$mpi speedup=$(awk -v a="$single" -v b="$mpi" 'BEGIN { printf "%.2f", a / b }') allreduce_s=$allreduce allreduce_mb=$(awk -v p="$params" 'BEGIN { printf "%.0f", p * 4 / 1e6 }')"
