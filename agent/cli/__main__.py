"""python -m agent.cli: the `tally` command."""
import sys

from agent.cli import main

sys.exit(main())
