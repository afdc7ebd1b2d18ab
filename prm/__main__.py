import sys

from prm.app.cli import main

sys.exit(main())
