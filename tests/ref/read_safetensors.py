"""A 20-line numpy reader for vae's model files (safetensors), to show that they open outside vae.

    /usr/bin/python3 tests/ref/read_safetensors.py demo/model.safetensors
"""
import json, struct, sys
import numpy as np

def load(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    assert all(isinstance(v, str) for v in meta.values()), "metadata values must be strings"
    assert (8 + n) % 8 == 0, "header padded to 8 bytes"
    data, end = raw[8 + n:], 0
    tensors = {}
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = t["data_offsets"]
        assert t["dtype"] == "F32" and b == end, name
        tensors[name] = np.frombuffer(data[b:e], "<f4").reshape(t["shape"])
        end = e
    assert end == len(data), "nothing after the last tensor"
    return meta, tensors

if __name__ == "__main__":
    meta, tensors = load(sys.argv[1])
    print(json.dumps(meta, indent=1))
    for name, t in tensors.items():
        print(f"{name:28s} {str(t.shape):12s} mean {t.mean():+.5f} std {t.std():.5f}")
