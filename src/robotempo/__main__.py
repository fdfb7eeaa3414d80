"""`python -m robotempo ...`: the same as the `robotempo` command."""

from robotempo.cli import main

raise SystemExit(main())
