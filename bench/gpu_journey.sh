#!/usr/bin/env bash
# A person's whole journey on a GPU, through the production functions (bench/gpu_journey.py): for an
# SD 1.5-shaped (512 px) and then an SDXL-shaped (1024 px) random-weight base model, bf16: the trainer's
# train_lora with the family's preset for 12 photos (prior preservation on; its class images generated once
# and not counted), 40 renders (4 styles x 10, the LoRA merged from bytes, marked, C2PA-signed and sealed),
# the per-image cost after denoising, and instant mode's time to the first 4 headshots from one photo.
# Prints each phase's JSON as soon as it is known (also appended to $OUT/gpu_journey_phases.jsonl when OUT
# is set), a table, and one JSON object with every figure and the goals as its last line.
# Goals on one H100: SD 1.5 journey < 90 s, SDXL < 300 s, instant mode < 5 s (SDXL), < 50 ms per image
# after denoising.
#
#   bash bench/gpu_journey.sh                   # on a CUDA machine, from the repository root (~6-8 minutes)
#   bash bench/gpu_journey.sh --cpu --tiny      # dry run anywhere: the tiny models of both families
#   options: --budget-s S (default 120: a training or render phase stops after S seconds and is
#            extrapolated, labelled so) --families sd15,sdxl --no-prior --class-images N (default 8)
#
# A bare CUDA machine with PyTorch, transformers, peft, accelerate, safetensors, numpy, Pillow, PyYAML and
# cryptography needs only what is in .whl/ (diffusers, pydantic, pydantic-settings and c2pa-python with
# their pure-Python dependencies): installed with --no-index into a scratch folder. Without c2pa-python the
# post-denoising cost is measured without the manifest, and the output says so. No NATS, S3 or Vault client
# is imported.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cpu=0
for arg in "$@"; do
  [[ $arg == --cpu ]] && cpu=1
done

if [[ $cpu == 1 ]]; then
  PYTHON="${PYTHON:-.venv/bin/python}"
  [[ -x $PYTHON ]] || PYTHON=python3
else
  PYTHON="${PYTHON:-python3}"
fi
SITE="${LIKENESS_GPU_SITE:-/tmp/likeness-gpu-site}"

if ! "$PYTHON" -c "import diffusers" 2>/dev/null; then
  if ! PYTHONPATH="$SITE" "$PYTHON" -c "import diffusers" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
      echo "diffusers is not installed and there are no wheels in .whl/ to install it from" >&2
      exit 2
    fi
    echo "installing the wheels in .whl/ into $SITE" >&2
    # One by one: a wheel built for another Python must not stop the ones diffusers needs.
    for wheel in .whl/*.whl; do
      "$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" "$wheel" \
        || echo "skipped $(basename "$wheel")" >&2
    done
    if ! PYTHONPATH="$SITE" "$PYTHON" -c "import diffusers"; then
      echo "diffusers still cannot be imported from $SITE" >&2
      exit 2
    fi
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="libs/likeness_ml:libs/likeness:libs/likeness_marks:services/trainer:services/renderer${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export DIFFUSERS_VERBOSITY=error TRANSFORMERS_VERBOSITY=error TRANSFORMERS_NO_ADVISORY_WARNINGS=1
export PYTHONWARNINGS=ignore
# A benchmark, never a deployment: said explicitly, since an unset LIKENESS_ENV means production.
export LIKENESS_ENV=development

exec "$PYTHON" bench/gpu_journey.py "$@"
