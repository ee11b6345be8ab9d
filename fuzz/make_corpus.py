#!/usr/bin/env python3
"""Writes the small hand-made seeds of fuzz/corpus/ (Python's standard library
only). Each target gets a few valid inputs and a few that fail one specific
check, so the fuzzer starts next to every branch of the parser. Seeds not made
here: the image fixtures copied from tests/fixtures/images, the CSV fixture
from tests/fixtures/linreg, and linear.safetensors written by
`nn train --model linear --epochs 1 --train-limit 1000 --save ...`.

    python3 fuzz/make_corpus.py            # rewrites the generated seeds
"""
import gzip
import json
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def gz(data):
    return gzip.compress(data, mtime=0)


# ---- IDX: fuzz_idx splits its input as <2-byte LE k><k bytes images><labels>

def idx(magic, dims, payload):
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload


def idx_pair(images, labels):
    return struct.pack("<H", len(images)) + images + labels


def idx_seeds():
    n, rows, cols = 3, 4, 4
    pixels = bytes((i * 37) % 256 for i in range(n * rows * cols))
    images, labels = idx(2051, [n, rows, cols], pixels), idx(2049, [n], bytes([0, 7, 9]))
    put("idx", "valid_raw", idx_pair(images, labels))
    put("idx", "valid_gzip", idx_pair(gz(images), gz(labels)))
    put("idx", "valid_gzip_images_raw_labels", idx_pair(gz(images), labels))
    put("idx", "gzip_two_members", idx_pair(gz(images[:10]) + gz(images[10:]), labels))
    put("idx", "label_out_of_range", idx_pair(images, idx(2049, [n], bytes([0, 10, 1]))))
    put("idx", "count_mismatch", idx_pair(images, idx(2049, [2], bytes([0, 1]))))
    put("idx", "swapped_magic", idx_pair(labels, images))
    put("idx", "truncated", idx_pair(images[:-5], labels))
    put("idx", "trailing_byte", idx_pair(images + b"\0", labels))
    put("idx", "huge_count_gzip", idx_pair(gz(idx(2051, [10000000, 1024, 1024], pixels)), labels))
    bad_crc = bytearray(gz(images))
    bad_crc[-8] ^= 0xFF
    put("idx", "gzip_bad_crc", idx_pair(bytes(bad_crc), labels))


# ---- safetensors: <8-byte LE header length><JSON header><data>

def st(header, data=b"", pad=True):
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def st_seeds():
    put("safetensors", "two_f32", st({
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]},
    }, f32([1, 2, 3, 4, 5, 6, -1, 0.5])))
    put("safetensors", "every_dtype", st({
        "a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
        "b": {"dtype": "F64", "shape": [], "data_offsets": [4, 12]},
        "c": {"dtype": "I8", "shape": [1, 1, 1, 1], "data_offsets": [12, 13]},
        "d": {"dtype": "F8_E4M3", "shape": [0, 5], "data_offsets": [13, 13]},
        "e": {"dtype": "BOOL", "shape": [3], "data_offsets": [13, 16]},
    }, bytes(16)))
    put("safetensors", "empty", st({}))
    put("safetensors", "overlap", st({
        "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "y": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
    }, bytes(8)))
    put("safetensors", "gap", st({"x": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}, bytes(2)))
    put("safetensors", "huge_shape", st({
        "x": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}}, bytes(4)))
    put("safetensors", "header_too_long", struct.pack("<Q", 1 << 40) + b"{}")
    put("safetensors", "metadata_not_string", st({"__metadata__": {"k": 1}}))
    dup = b'{"t":{"dtype":"U8","shape":[],"data_offsets":[0,1]},"t":1}'
    put("safetensors", "duplicate_key", struct.pack("<Q", len(dup)) + dup + b"\0")
    bad = b'{"\xc3\x28":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}'
    put("safetensors", "bad_utf8", struct.pack("<Q", len(bad)) + bad + b"\0")

# ---- checkpoints: an MLP 4-3-2 as nn writes it, with and without LayerNorm

def mlp_checkpoint(layers, norm="none", act="relu", extra=None):
    meta = {"nn.arch": "mlp" if len(layers) > 2 else "linear",
            "nn.layers": ",".join(map(str, layers)), "nn.act": act, "nn.norm": norm,
            "nn.dropout": "0.1", "nn.input_mean": "0.1307", "nn.input_std": "0.3081"}
    meta.update(extra or {})
    header, data = {"__metadata__": meta}, b""

    def add(name, shape):
        nonlocal data
        count = 1
        for d in shape:
            count *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + 4 * count]}
        data += f32([0.25 * ((i % 7) - 3) for i in range(count)])

    for i in range(len(layers) - 1):
        add("fc%d.weight" % (i + 1), [layers[i + 1], layers[i]])
        add("fc%d.bias" % (i + 1), [layers[i + 1]])
        if norm == "layer" and i < len(layers) - 2:
            add("ln%d.weight" % (i + 1), [layers[i + 1]])
            add("ln%d.bias" % (i + 1), [layers[i + 1]])
    return st(header, data)


def checkpoint_seeds():
    put("checkpoint", "mlp_4_3_2", mlp_checkpoint([4, 3, 2]))
    put("checkpoint", "mlp_layernorm_gelu", mlp_checkpoint([4, 3, 3, 2], norm="layer", act="gelu"))
    put("checkpoint", "linear_4_2", mlp_checkpoint([4, 2], extra={"nn.epoch": "3"}))
    put("checkpoint", "bad_layers", mlp_checkpoint([4, 3, 2], extra={"nn.layers": "4,,2"}))
    put("checkpoint", "bad_dropout", mlp_checkpoint([4, 3, 2], extra={"nn.dropout": "nan"}))
    put("checkpoint", "layers_without_weights", mlp_checkpoint([4, 2], extra={"nn.layers": "65536,65536,10"}))
    wrong = mlp_checkpoint([4, 3, 2]).replace(b'"shape":[3,4]', b'"shape":[4,3]')
    put("checkpoint", "transposed_weight", wrong)


# ---- images: tiny PNGs of several colour types, PGMs, and broken files

def png(width, height, bit_depth, colour, rows, interlace=0, chunks=()):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, interlace)
    raw = b"".join(b"\0" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(chunk(k, v) for k, v in chunks)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def image_seeds():
    digit = [b"\xff\xff\xff\xff", b"\xff\x00\x00\xff", b"\xff\x00\xff\xff", b"\xff\x00\xff\xff"]
    put("image", "gray8.png", png(4, 4, 8, 0, digit))
    put("image", "gray16.png", png(2, 2, 16, 0, [b"\xff\xff\x00\x00", b"\x12\x34\xff\xff"]))
    put("image", "palette2_trns.png", png(4, 2, 2, 3, [b"\x1b", b"\xe4"],
                                          chunks=[(b"PLTE", bytes(range(12))), (b"tRNS", b"\x00\x80")]))
    put("image", "rgba.png", png(3, 3, 8, 6, [bytes(range(i, i + 12)) for i in range(3)]))
    # Adam7 of a 3x3 image: passes 1, 4, 5, 6, 7 hold 1x1, 1x1, 2x1, 1x2, 3x1 pixels.
    put("image", "gray_interlaced.png", png(3, 3, 8, 0, [b"\x10", b"\x20", b"\x30\x40", b"\x50", b"\x60",
                                                         b"\x70\x80\x90"], interlace=1))
    put("image", "truncated.png", png(4, 4, 8, 0, digit)[:40])
    put("image", "huge_declared.png", png(8192, 8192, 1, 0, [b"\0"]))
    put("image", "p5_8bit.pgm", b"P5\n# a comment\n3 2\n255\n" + bytes([0, 128, 255, 255, 0, 9]))
    put("image", "p5_16bit.pgm", b"P5 2 1 65535\n" + b"\x12\x34\xff\xff")
    put("image", "p2_ascii.pgm", b"P2\n3 3\n15\n0 0 0\n0 15 0\n0 0 0\n")
    put("image", "p5_truncated.pgm", b"P5\n4 4\n255\n" + bytes(5))
    put("image", "p2_sample_too_big.pgm", b"P2 2 1 9 3 10\n")


# ---- CSV: small tables, quoting, and the errors the parser reports

def csv_seeds():
    put("csv", "simple.csv", b"x,y\n1,2\n3,4.5\n-1e3,0\n")
    put("csv", "quoted_crlf.csv", b'"a, b","say ""hi"""\r\n" 1",2\r\n\r\n3 , "4"\r\n')
    put("csv", "ragged.csv", b"a,b,c\n1,2,3\n4,5\n")
    put("csv", "unterminated.csv", b'a,b\n"1,2\n')
    put("csv", "not_numbers.csv", b"a,b\nnan,inf\n0x10,1e999\n")
    put("csv", "header_only.csv", b"a,b\n")
    put("csv", "duplicate_header.csv", b"a,a,2\n1,2,3\n")


if __name__ == "__main__":
    idx_seeds()
    st_seeds()
    checkpoint_seeds()
    image_seeds()
    csv_seeds()
