"""`python -m medtune`: the same as the `medtune` command."""

import sys

from medtune.cli import main

sys.exit(main())
