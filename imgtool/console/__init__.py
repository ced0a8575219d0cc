"""What the command line needs around it: the click group (app), the error funnel, the parameter
types and shared options (params), rendering (render/, a module per subject: tables, JSON;
output: escaping of strings from the image, colour, progress bars) and shell completion. Only
this package and ``imgtool.cli`` import click or print.

May import: every other package of imgtool.
"""
