"""What an image is, wherever it came from: digests and verifying readers, compression, media
types and platforms, the JSON model (no I/O of its own), and the read-only Image and Layer.

May import: ``imgtool.errors``, ``imgtool.progress`` and the standard library; nothing else of imgtool.
"""
