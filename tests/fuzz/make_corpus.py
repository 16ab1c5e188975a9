"""Writes the seed corpora for fuzz_safetensors into corpus/safetensors/
and for fuzz_jsonl into corpus/jsonl/.

Files named valid_* must be accepted; files named invalid_* must be
rejected (for JSONL: at least one line is).
tests/fuzz/test_corpus_replay.c checks both, so keep the prefixes honest.
Plain Python 3, no third-party packages: python3 tests/fuzz/make_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "safetensors")
JSONL_OUT = os.path.join(HERE, "corpus", "jsonl")

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


def jsonl_corpus():
    """Writes JSONL passage files; fuzz_jsonl reads lines of at most 256 bytes."""
    os.makedirs(JSONL_OUT, exist_ok=True)
    line = lambda obj: json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"
    files = {
        "valid_basic": line({"id": 0, "title": "Teutberga", "text": "Teutberga was a queen."})
        + line({"id": "p-1", "text": "No title here."}),
        "valid_metadata": line({"id": 7, "title": "T", "text": "x", "url": "http://a",
                                "tags": [1, {"k": None}], "score": 0.5}),
        "valid_unicode_crlf": line({"id": "ș", "title": "Ștefan I. Nenițescu",
                                    "text": "Born in Galați \u2019s \U0001F600"}).replace(
            b"\n", b"\r\n") + b"\n   \n",
        "valid_query_syntax": line({"id": 1, "text": 'title:"a" AND (b* OR ^c) NEAR(d e, 2) -f'}),
        "invalid_malformed": line({"id": 1, "text": "ok"}) + b'{"id": 2, "text": "x"\n',
        "invalid_missing_text": line({"id": 1, "title": "no text"}),
        "invalid_id_type": line({"id": [1], "text": "x"}) + line({"id": 1.5, "text": "y"}),
        "invalid_long_line": line({"id": 1, "text": "w " * 200}),
        "invalid_utf8": b'{"id": 1, "text": "caf\xe9"}\n',
        "invalid_nul": b'{"id": 1, "text": "a\x00b"}\n',
        "invalid_not_object": b'[1, 2, 3]\n"text"\n',
        "invalid_duplicate_key": b'{"id": 1, "text": "a", "text": "b"}\n',
    }
    for name, content in files.items():
        with open(os.path.join(JSONL_OUT, name + ".jsonl"), "wb") as f:
            f.write(content)


if __name__ == "__main__":
    main()
    jsonl_corpus()
