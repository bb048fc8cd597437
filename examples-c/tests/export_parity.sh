#!/bin/sh
# export_parity.sh EXPORT_EXAMPLE MODEL N_HEADS SIZE PYTHON PARITY_PY
#
# ONNX Runtime parity of neco_export_onnx: export_example writes a fixed-size and a dynamic-size
# export of MODEL plus input batches and libneco's own outputs (neco_extract_nchw) into a scratch
# folder; scripts/onnx_parity.py (PARITY_PY, run by PYTHON: the venv of `scripts/setup.sh --test`
# with onnx, onnxruntime and numpy) checks every file with onnx.checker (full_check), runs it in
# ONNX Runtime and compares each output (max abs difference <= 1e-4).
# Prints "PARITY PASS ..." and exits 0 on success; 77 when the model is missing (export_example's
# skip); 1 with a hint when PYTHON cannot import onnx / onnxruntime / numpy.
set -eu
exe=$1 model=$2 heads=$3 size=$4 python=$5 script=$6
if ! "$python" -c 'import onnx, onnxruntime, numpy' >/dev/null 2>&1; then
    echo "export_parity: $python cannot import onnx, onnxruntime and numpy: run scripts/setup.sh --test" \
         "(or configure with -DNECO_TEST_ONNXRUNTIME=OFF)"
    exit 1
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/neco-export-parity-XXXXXX")
trap 'rm -rf "$dir"' EXIT
rc=0
"$exe" "$model" "$heads" "$size" "$dir" || rc=$?
[ $rc = 0 ] || exit $rc
"$python" "$script" check "$dir/manifest.json"
