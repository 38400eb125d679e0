"""tfbulk: bulk-download a signed-URL video catalogue, resumably and verified."""

__version__ = "0.1.0"
