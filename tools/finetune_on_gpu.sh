#!/usr/bin/env bash
# Fine-tunes UPG files (trellis and dense tensors) on a GPU machine that has PyTorch but not UPG's
# build (the lent H100/H200): decodes each file with the numpy reference decoder, then runs
# python/upg/finetune.py as a script and writes the tuned parameters; `upg apply-tuning` folds them
# in on the build machine. BUNDLE.tar.xz holds ftb/refA/ (config.json, model.safetensors of the
# original), ftb/calib.npy (token ids) and ftb/NAME.upg for each NAME; JOBS: NAME:LR:SECONDS ...;
# FT_ARGS: more options for every job (e.g. "--batch 16 --max-tokens 3000000").
#   tools/finetune_on_gpu.sh BUNDLE.tar.xz OUT STEPS "refA-3.2-t:1e-3:170 refA-2.2-t:3e-3:95"
set -uo pipefail
BUNDLE="$1"; OUT="$2"; STEPS="$3"; JOBS="$4"; mkdir -p "$OUT"
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall('/tmp')" "$BUNDLE" || exit 1
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
for job in $JOBS; do
  IFS=: read -r name lr secs <<< "$job"
  [ -d "/tmp/dec-$name" ] || python3 tools/reference/decode_to_safetensors.py "/tmp/ftb/$name.upg" "/tmp/dec-$name" \
    /tmp/ftb/refA/config.json || continue
  timeout $((secs + 30)) python3 python/upg/finetune.py --base /tmp/ftb/refA --model "/tmp/dec-$name" \
    --tokens /tmp/ftb/calib.npy --device cuda --eval-windows 32 --eval-every 200 --steps "$STEPS" --lr "$lr" \
    --time-limit "$secs" ${FT_ARGS:-} --save-tuned "$OUT/tuned-$name-lr$lr.safetensors" > "$OUT/ft-$name-lr$lr.log" 2>&1
  echo "== $name lr $lr (exit $?)"; grep -E "before|step .*/|limit" "$OUT/ft-$name-lr$lr.log" | tail -3
done
