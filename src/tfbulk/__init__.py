"""tfbulk: bulk-download a signed-URL video catalogue, resumably and verified."""

import sys
import types

__version__ = "0.1.0"

# httpx imports its own command-line tool (click, rich.syntax, pygments) whenever those are
# installed, as they are here: 3.5 MiB of resident memory that tfbulk never uses. An empty
# stand-in makes httpx fall back to its stub `main`, as it does when they are missing.
sys.modules.setdefault("httpx._main", types.ModuleType("httpx._main"))
