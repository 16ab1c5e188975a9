"""Writes the seed corpora for fuzz_safetensors, fuzz_gguf and fuzz_jsonl
into corpus/safetensors/, corpus/gguf/ and corpus/jsonl/.

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
GGUF_OUT = os.path.join(HERE, "corpus", "gguf")
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


# GGUF value types and the struct format of each scalar type.
GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32 = range(7)
GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64 = range(7, 13)
GGUF_SCALAR = {GGUF_U8: "B", GGUF_I8: "b", GGUF_U16: "H", GGUF_I16: "h", GGUF_U32: "I",
               GGUF_I32: "i", GGUF_F32: "f", GGUF_BOOL: "B", GGUF_U64: "Q", GGUF_I64: "q",
               GGUF_F64: "d"}
# Storage types: ggml's number, elements per block and bytes per block.
QTYPES = {"f32": (0, 1, 4), "f16": (1, 1, 2), "q4_0": (2, 32, 18), "q8_0": (8, 32, 34),
          "bf16": (30, 1, 2)}


def gguf_string(text):
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def gguf_value(vtype, value):
    """Encodes a value of vtype; an array is (element type, list)."""
    if vtype == GGUF_STRING:
        return gguf_string(value)
    if vtype == GGUF_ARRAY:
        etype, items = value
        return struct.pack("<IQ", etype, len(items)) + b"".join(
            gguf_value(etype, item) for item in items)
    return struct.pack("<" + GGUF_SCALAR[vtype], value)


def gguf(kvs, tensors=(), version=3, alignment=32, offsets=None):
    """Builds a GGUF file. kvs: (key, type, value); tensors: (name, qtype
    name, ne) with data bytes counting upward; offsets overrides the data
    offsets."""
    header = struct.pack("<4sIQQ", b"GGUF", version, len(tensors), len(kvs))
    for key, vtype, value in kvs:
        header += gguf_string(key) + struct.pack("<I", vtype) + gguf_value(vtype, value)
    data = b""
    for i, (name, qtype, ne) in enumerate(tensors):
        number, block, block_bytes = QTYPES.get(qtype, (qtype, 1, 4))
        rows = 1
        for dim in ne[1:]:
            rows *= dim
        size = ne[0] // block * block_bytes * rows
        offset = len(data) if offsets is None else offsets[i]
        header += gguf_string(name) + struct.pack("<I", len(ne))
        header += struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", number, offset)
        data += bytes((len(data) + k) % 251 for k in range(size))
        data += bytes(-len(data) % alignment)
    header += bytes(-len(header) % alignment)
    return header + data


def gguf_corpus():
    files = {}
    files["valid_basic"] = gguf([("general.architecture", GGUF_STRING, "llama")],
                                [("w", "f32", [4, 2])])
    files["valid_all_types"] = gguf(
        [("u8", GGUF_U8, 200), ("i8", GGUF_I8, -3), ("u16", GGUF_U16, 60000),
         ("i16", GGUF_I16, -300), ("u32", GGUF_U32, 7), ("i32", GGUF_I32, -7),
         ("f32", GGUF_F32, 0.5), ("bool", GGUF_BOOL, 1), ("s", GGUF_STRING, "text"),
         ("u64", GGUF_U64, 2 ** 40), ("i64", GGUF_I64, -2 ** 40), ("f64", GGUF_F64, 0.25),
         ("ints", GGUF_ARRAY, (GGUF_I32, [1, -2, 3])),
         ("tokens", GGUF_ARRAY, (GGUF_STRING, ["<s>", "", "\u2581a"]))],
        [("a", "f32", [4]), ("b", "f16", [2, 3]), ("c", "bf16", [2, 1, 2]),
         ("d", "q8_0", [32, 2]), ("e", "q4_0", [64, 1, 1, 1])])
    files["valid_vocab_only"] = gguf(
        [("tokenizer.ggml.model", GGUF_STRING, "gpt2"),
         ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, ["a", "b", "ab"])),
         ("tokenizer.ggml.merges", GGUF_ARRAY, (GGUF_STRING, ["a b"]))])
    files["valid_version2"] = gguf([("n", GGUF_U32, 1)], [("w", "f32", [8])], version=2)
    files["valid_alignment64"] = gguf([("general.alignment", GGUF_U32, 64)],
                                      [("a", "f32", [4]), ("b", "q8_0", [32])], alignment=64)

    basic = files["valid_basic"]
    files["invalid_magic"] = b"GGUG" + basic[4:]
    files["invalid_version1"] = gguf([], version=1)
    files["invalid_truncated"] = basic[:-1]
    files["invalid_huge_count"] = struct.pack("<4sIQQ", b"GGUF", 3, 0, 2 ** 60)
    files["invalid_duplicate_key"] = gguf([("k", GGUF_U32, 1), ("k", GGUF_U32, 2)])
    files["invalid_duplicate_tensor"] = gguf([], [("w", "f32", [8]), ("w", "f32", [8])])
    files["invalid_misaligned"] = gguf([], [("w", "f32", [8])], offsets=[4])
    files["invalid_unknown_type"] = gguf([], [("w", 99, [8])])
    files["invalid_overlap"] = gguf([], [("a", "f32", [16]), ("b", "f32", [8])],
                                    offsets=[0, 32])
    files["invalid_nested_array"] = gguf([("n", GGUF_ARRAY, (GGUF_ARRAY, []))])
    files["invalid_bool"] = gguf([("b", GGUF_BOOL, 2)])
    files["invalid_block_size"] = gguf([], [("q", "q8_0", [33])])
    return files


def main():
    os.makedirs(GGUF_OUT, exist_ok=True)
    for name, content in gguf_corpus().items():
        with open(os.path.join(GGUF_OUT, name + ".gguf"), "wb") as f:
            f.write(content)

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
