"""What users ask of an image: inspect, verify, which-layer, ls, cat, diff, copy, squash. Each takes
an opened Image (or what ``imgtool.merge`` derives from one) and plain options and returns data;
none prints.

May import: ``imgtool.flatten`` (squash writes its layer with flatten's tar writer),
``imgtool.merge``, ``imgtool.layers``, ``imgtool.image``, ``imgtool.errors``, ``imgtool.progress``.
"""
