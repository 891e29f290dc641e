import sys

from drlcli.cli import main

sys.exit(main())
