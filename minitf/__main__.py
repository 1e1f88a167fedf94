import sys

from minitf.cli import main

sys.exit(main())
