"""Writing the merged root filesystem: the output plan, the directory writer, the tar writer,
provenance and the --safe policy; ``flatten()`` in :mod:`imgtool.flatten.api` is the entry point.

May import: ``imgtool.merge``, ``imgtool.layers``, ``imgtool.image``, ``imgtool.system``,
``imgtool.errors``, ``imgtool.progress``.
"""
