import sys

from vimpac_cli import main

sys.exit(main())
