"""Views over a run: a live terminal view, plain log lines, summaries, a JSON event log.

They consume engine events (through `RunTracker`) and never drive the engine.
"""
