#!/usr/bin/python3
"""Writes the small .npy fixtures of tests/test_npy.cpp with numpy itself.

Run from the repository root:  /usr/bin/python3 tools/make_npy_fixtures.py
The values are simple formulas that tests/test_npy.cpp recomputes, so a reader that gets them
right reads what numpy wrote, not what our own writer wrote.
"""
import os

import numpy as np

OUT = os.path.join("tests", "ref", "npy")


def save(name, arr, version=None):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=version, allow_pickle=False)
    print(f"{path}: {arr.dtype.str} {arr.shape} fortran={np.isfortran(arr)} version={version or 'auto'}")


def main():
    os.makedirs(OUT, exist_ok=True)
    f32 = (np.arange(15, dtype=np.float32) / np.float32(7)).reshape(5, 3)  # x[i,j] = (3i+j)/7
    save("f32_5x3.npy", f32)

    # float16: a few exact values, the smallest subnormal 2^-24, the largest subnormal and
    # negative zero; the test compares them exactly after conversion to float32.
    f16 = np.array([[0.5, -1.25, 2.0 ** -24],
                    [1023 * 2.0 ** -24, -0.0, 65504.0],
                    [0.1, -3.0, 1.0 + 2.0 ** -10],
                    [2.0 ** -14, 7.0, -0.33325195]], dtype=np.float16)
    save("f16_4x3.npy", f16)

    save("f32_v2.npy", f32, version=(2, 0))
    save("f32_v3.npy", f32, version=(3, 0))
    save("f32_fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    save("i64_2x4.npy", np.arange(8, dtype=np.int64).reshape(2, 4) * 1000 - 3000)  # numpy's default int
    save("i32_1d.npy", np.arange(6, dtype=np.int32) - 2)
    save("f32_bigendian.npy", np.arange(6, dtype=">f4").reshape(2, 3))
    save("f32_1d.npy", np.arange(7, dtype=np.float32) * np.float32(0.25))  # x[i] = i/4
    save("f64_2x2.npy", np.eye(2))  # a dtype we refuse


if __name__ == "__main__":
    main()
