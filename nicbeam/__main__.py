"""``python -m nicbeam`` runs the command line."""

import sys

from nicbeam.pipelines.cli import main

sys.exit(main())
