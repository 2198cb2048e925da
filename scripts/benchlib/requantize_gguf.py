#!/usr/bin/env python3
"""Re-quantize the Q4_1 tensors of a GGUF to Q4_0 (or Q8_0), copying the rest.

Why: llama.cpp's repacked CPU kernels (the AArch64/x86 "repack" buffer type,
e.g. Q4_0 -> q4_0_8x8) exist for Q4_0 but not for Q4_1, and its own quantizer
(llama-quantize) is C++ that would need a ~10 minute llama.cpp build here.
The `gguf` PyPI package (gguf-py, pure numpy) reads, converts and writes GGUF.

Every metadata key/value is copied as stored (same types, arrays and strings
included) except the ones GGUFWriter writes itself (GGUF.*, general.architecture,
general.alignment, which is kept via add_custom_alignment) and general.file_type,
which is set to the target type as llama-quantize would. Tensors stored as Q4_1
are dequantized to f32 and quantized to the target type; every other tensor is
copied byte for byte with its type unchanged. The output is deterministic.

Usage (in .venv-bench, with `pip install gguf==0.19.0`): python scripts/benchlib/requantize_gguf.py IN.gguf OUT.gguf --type Q4_0
"""
import argparse

import gguf
from gguf import GGMLQuantizationType as QT, GGUFValueType as VT, LlamaFileType as FT

FILE_TYPE = {"Q4_0": FT.MOSTLY_Q4_0, "Q8_0": FT.MOSTLY_Q8_0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--type", choices=sorted(FILE_TYPE), default="Q4_0")
    args = ap.parse_args()
    target = QT[args.type]

    r = gguf.GGUFReader(args.input)
    arch = r.get_field("general.architecture").contents()
    w = gguf.GGUFWriter(args.output, arch=arch, endianess=r.endianess)
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "general.alignment":
            w.add_custom_alignment(int(f.contents()))
            continue
        if name == "general.file_type":
            w.add_key_value(name, int(FILE_TYPE[args.type]), f.types[0])
            continue
        sub = f.types[-1] if f.types[0] == VT.ARRAY else None
        # add_key_value, not add_string/add_array: those drop empty values.
        w.add_key_value(name, f.contents(), f.types[0], sub_type=sub)

    counts: dict[str, int] = {}
    for t in r.tensors:
        data, qtype = t.data, t.tensor_type
        if qtype == QT.Q4_1:
            data, qtype = gguf.quants.quantize(gguf.quants.dequantize(data, QT.Q4_1), target), target
            key = f"Q4_1->{args.type}"
        else:
            key = f"{qtype.name} copied"
        counts[key] = counts.get(key, 0) + 1
        w.add_tensor(t.name, data, raw_dtype=qtype, tensor_endianess=r.endianess)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{args.output}: {len(r.tensors)} tensors ("
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ")")


if __name__ == "__main__":
    main()
