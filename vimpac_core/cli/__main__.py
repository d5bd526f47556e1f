import sys

from vimpac_core.cli import main

sys.exit(main())
