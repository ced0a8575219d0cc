"""Reading one layer: the tar reader, entries and their kinds, canonical names, the whiteout words.

A layer is a stream of entries; a tar blob is one way to produce them.

May import: ``imgtool.image``, ``imgtool.errors``, ``imgtool.progress``.
"""
