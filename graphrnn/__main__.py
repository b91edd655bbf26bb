"""`python -m graphrnn`: the graphrnn command."""
from .cli import main

raise SystemExit(main())
