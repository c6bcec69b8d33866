"""Reads memtrain's TensorBoard event files with TensorBoard's own code (tests/reference/tensorboard_reference_test.cc).

For each events.out.tfevents.* file of DIR in name order: every TFRecord frame through TensorBoard's record reader,
which checks both masked CRC-32Cs (a bad one raises DataLossError, a torn frame an error too), each parsed as a
tensorflow.Event protocol buffer. Prints "file NAME FILE_VERSION_OF_ITS_FIRST_EVENT", then "scalar TAG STEP VALUE"
per simple value. Then what TensorBoard would show for the directory: "shown TAG STEP VALUE" from its
EventAccumulator."""
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow

run_dir = sys.argv[1]
for name in sorted(n for n in os.listdir(run_dir) if "tfevents" in n):
    reader = pywrap_tensorflow.PyRecordReader_New(os.path.join(run_dir, name).encode(), 0, None, None)
    events = []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        events.append(event_pb2.Event.FromString(reader.record()))
    print("file", name, events[0].file_version if events else "none")
    for e in events:
        for v in e.summary.value:
            print("scalar", v.tag, e.step, repr(v.simple_value))

acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
acc.Reload()
for tag in sorted(acc.Tags()["scalars"]):
    for s in acc.Scalars(tag):
        print("shown", tag, s.step, repr(s.value))
