"""The local CloudFront-like origin: product (the demo, rehearsals with `tfbulk origin`)
and the tests' server. `content` is what it serves, `faults` how it can misbehave,
`server` the HTTP side; `sample` makes the demo's catalogue."""

from tfbulk.origin.content import DirectoryContent, SyntheticContent
from tfbulk.origin.faults import Fault, RequestRecord
from tfbulk.origin.server import Origin

__all__ = ["DirectoryContent", "Fault", "Origin", "RequestRecord", "SyntheticContent"]
