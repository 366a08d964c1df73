"""``python -m sedge_pyro.cli``: the ``sedge`` command."""

import sys

from sedge_pyro.cli import main

sys.exit(main())
