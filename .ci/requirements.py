"""Prints the package's `install_requires` (setup.cfg) and the extras named
on the command line, one requirement per line, for a venv that installs
them without installing the package itself (see the Makefile)."""

import configparser
import os
import sys

config = configparser.ConfigParser()
config.read(os.path.join(os.path.dirname(__file__), "..", "setup.cfg"))
values = [config["options"]["install_requires"]]
values += [config["options.extras_require"][extra] for extra in sys.argv[1:]]
for value in values:
    for line in value.splitlines():
        line = line.split("#")[0].strip()
        if line:
            print(line)
