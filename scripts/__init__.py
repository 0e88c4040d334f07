"""Developer tools: not part of the installed kit (lint beyond ruff, README target table)."""
