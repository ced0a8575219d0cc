"""What imgtool needs of the operating system beyond ``os``: C library calls, tree removal at any
depth, and the staging names, locks and signal handling of files being written.

May import: ``imgtool.errors`` and the standard library.
"""
