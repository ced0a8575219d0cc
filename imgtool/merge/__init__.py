"""Applying layers: the tree and its union-filesystem semantics (once), path resolution, change
records, the merged view, the header index and its cache, and the spool that keeps decompressed
layers for a second reading.

May import: ``imgtool.layers``, ``imgtool.image``, ``imgtool.system``, ``imgtool.errors``,
``imgtool.progress``.
"""
