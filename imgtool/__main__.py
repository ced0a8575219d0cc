from imgtool.cli import entry

entry()
