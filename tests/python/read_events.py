"""Reads a TensorBoard log directory with TensorBoard's own EventAccumulator
and prints what it found as JSON: scalar tags with their values, image tags
with their sizes, histogram tags; and the step of each (with each
histogram's count of values)."""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "images": 0, "histograms": 0})
acc.Reload()
tags = acc.Tags()
out = {
    "scalars": {t: [e.value for e in acc.Scalars(t)] for t in tags["scalars"]},
    "images": {t: [[e.width, e.height, len(e.encoded_image_string)] for e in acc.Images(t)] for t in tags["images"]},
    "histograms": {t: len(acc.Histograms(t)) for t in tags["histograms"]},
    "scalar_steps": {t: [e.step for e in acc.Scalars(t)] for t in tags["scalars"]},
    "image_steps": {t: [e.step for e in acc.Images(t)] for t in tags["images"]},
    "histogram_steps": {t: [[e.step, e.histogram_value.num] for e in acc.Histograms(t)] for t in tags["histograms"]},
}
print(json.dumps(out))
