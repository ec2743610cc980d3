"""cryodet from Python: organelle detection in cryo-ET images and tomograms from numpy arrays.

The work is done by the cryodet core library (Rust), the same code as the ``cryodet`` command:
``Model.detect`` gives what ``cryodet detect IMAGE`` writes to ``NAME.json``,
``Model.detect_volume`` what ``cryodet detect STACK --3d`` writes to ``NAME.json`` and
``NAME.objects.json``, ``evaluate`` what ``cryodet eval`` writes to ``metrics.json``.
Signatures, shapes and defaults: ``cryodet/_cryodet.pyi``.

>>> import mrcfile, cryodet
>>> model = cryodet.load_model("slices")
>>> with mrcfile.open("tomo.rec", permissive=True) as mrc:
...     result = model.detect_volume(mrc.data, pixel_size=float(mrc.voxel_size.x) / 10)
>>> [o["bbox3d"] for o in result["objects"]]
"""

from ._cryodet import Model, evaluate, load_model, read_voc, write_voc

__all__ = ["Model", "load_model", "evaluate", "read_voc", "write_voc"]
