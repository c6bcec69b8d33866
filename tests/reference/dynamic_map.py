"""The 8-bit dynamic code books as bitsandbytes' create_dynamic_map builds them (torch fp32 tensors), printed as
exact hex floats, one line per book: the reference for tests/reference/dynamic_map_reference_test.cc."""
import torch


def dynamic_map(signed, max_exponent_bits=7, total_bits=8):
    values = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        items = 2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed \
            else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
        edges = torch.linspace(0.1, 1, items)
        mids = (edges[:-1] + edges[1:]) / 2.0
        scale = 10 ** (-(max_exponent_bits - 1) + i)
        values += (scale * mids).tolist()
        if signed:
            values += (-scale * mids).tolist()
    extra = 2 ** (non_sign_bits - max_exponent_bits) - 1
    assert extra == 0  # at 8 bits every code comes from the loop
    values += [0.0, 1.0]
    values += [0.0] * (256 - len(values))
    values.sort()
    return torch.tensor(values, dtype=torch.float32)


for signed in (True, False):
    print(" ".join(float(v).hex() for v in dynamic_map(signed).tolist()))
