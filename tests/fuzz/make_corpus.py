"""Writes the seed corpus for fuzz_safetensors into corpus/safetensors/.

Files named valid_* must open; files named invalid_* must be rejected.
tests/fuzz/test_corpus_replay.c checks both, so keep the prefixes honest.
Plain Python 3, no third-party packages: python3 tests/fuzz/make_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "safetensors")

SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
         "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def pack(header, data, length=None):
    """Serializes a header dict (or raw bytes) and data, padding to 8 bytes."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    if not isinstance(header, bytes):
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def tensors(specs, metadata=None):
    """specs: (name, dtype, shape) in data order; data bytes count upward."""
    header, data = {}, b""
    for name, dtype, shape in specs:
        count = 1
        for dim in shape:
            count *= dim
        size = count * SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + size]}
        data += bytes((len(data) + k) % 251 for k in range(size))
    if metadata is not None:
        header["__metadata__"] = metadata
    return header, data


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {}

    header, data = tensors([("w", "F32", [2, 2])], {"format": "pt"})
    files["valid_basic"] = pack(header, data)

    header, data = tensors([(f"t_{dtype.lower()}", dtype, [3]) for dtype in SIZES]
                           + [("scalar", "F32", []), ("empty", "BF16", [0, 4])])
    files["valid_all_dtypes"] = pack(header, data)
    files["valid_empty_header"] = pack({}, b"")

    header, data = tensors([("a", "U8", [3]), ("b", "F32", [2])])
    files["valid_unaligned"] = pack(header, data)

    header, data = tensors([("a", "F32", [2])])
    files["invalid_trailing"] = pack(header, data + b"\0\0\0\0")
    files["invalid_truncated_data"] = pack(header, data[:-1])
    files["invalid_header_length"] = pack(header, data, length=10 ** 9)
    files["invalid_truncated"] = b"\x10\0\0\0"
    files["invalid_json"] = pack(b'{"a": {"dtype": "F32", ', b"")

    header["b"] = {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}
    files["invalid_overlap"] = pack(header, data)
    header["b"]["data_offsets"] = [12, 16]
    files["invalid_hole"] = pack(header, data + bytes(8))

    files["invalid_dtype"] = pack({"a": {"dtype": "F33", "shape": [1],
                                         "data_offsets": [0, 4]}}, bytes(4))
    files["invalid_overflow"] = pack({"a": {"dtype": "F64", "shape": [2 ** 31, 2 ** 31, 2 ** 3],
                                            "data_offsets": [0, 8]}}, bytes(8))
    files["invalid_metadata"] = pack({"__metadata__": {"step": 3}}, b"")

    for name, content in files.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(content)


if __name__ == "__main__":
    main()
