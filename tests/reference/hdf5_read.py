"""Reads an HDF5 file with h5py and prints, per dataset in name order: name, shape, dtype, whether the Fletcher-32
filter is on, and the float64 sum and first element of its values (tests/reference/hdf5_h5py_test.cc)."""
import sys

import h5py
import numpy as np

with h5py.File(sys.argv[1], "r") as f:
    names = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    for name in sorted(names):
        d = f[name]
        values = d[()].astype(np.float64)
        print(name, "x".join(str(s) for s in d.shape), d.dtype.name, int(d.fletcher32), repr(float(values.sum())),
              repr(float(values.flat[0])))
    print("attr", f.attrs["manifest"].decode() if isinstance(f.attrs["manifest"], bytes) else f.attrs["manifest"])
