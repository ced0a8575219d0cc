"""What the command line needs around it: rendering (tables, JSON, escaping of strings from the
image, colour, progress bars) and shell completion. Only this package and ``imgtool.cli`` import
click or print.

May import: every other package of imgtool.
"""
