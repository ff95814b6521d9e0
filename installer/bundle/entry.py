"""The bundle's entry point: the window by default, the command line with a command."""

import multiprocessing
import sys

from app.launcher import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # child processes started by libraries re-enter here
    sys.exit(main())
