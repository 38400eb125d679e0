"""Observers for machines rather than people: Prometheus metrics, hooks, health-check pings.

Each one only reads the engine's events (`tfbulk.pipeline.events`) and does its slow work
(writing files, serving scrapes, running commands, HTTP pings) on its own threads, so none
of them can hold up a download. They are imported only when their flag is given.
"""
