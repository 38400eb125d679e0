"""Sample catalogues in the contract's snapshot schema (demo, tests, benchmarks).

Names look like a real guitar-lesson catalogue so the demo's screens read naturally; some
segments have no video so the "no video" filter has something to do.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

STYLES = ("Blues", "Rock", "Jazz", "Fingerstyle", "Country", "Funk", "Metal", "Acoustic")
TOPICS = ("Rhythm", "Soloing", "Chord Melody", "Slide", "Improvisation", "Technique", "Grooves")
LESSONS = (
    "Intro",
    "Warm-up",
    "The Shuffle Feel",
    "Minor Pentatonic Box 1",
    "Bending in Tune",
    "Vibrato",
    "Double Stops",
    "Turnarounds",
    "Call and Response",
    "Playing Over the IV",
    "Hybrid Picking",
    "Ghost Notes",
    "Triads Up the Neck",
    "Slow Blues Solo",
    "Performance",
    "Breakdown",
    "Backing Track Jam",
    "Outro",
)


@dataclass(frozen=True)
class SampleSegment:
    segment_id: int
    channel_id: int
    video: str | None
    title: str


@dataclass(frozen=True)
class SampleCourse:
    course_id: int
    title: str | None
    channels: tuple[int, ...]
    segments: tuple[SampleSegment, ...]


def guitar_catalogue(
    courses: int, segments_per_course: int, *, no_video_every: int = 7, seed: int = 1
) -> list[SampleCourse]:
    """A deterministic catalogue: `courses` courses of `segments_per_course` segments.

    Every course has its `no_video_every`-th, 2×-th… segment without a video, so all
    courses have as many downloadable segments (the demo's `--segments 12` shows 11 each).
    """
    rng = random.Random(seed)
    catalogue, segment_id, channel_id = [], 1000, 100
    for index in range(courses):
        course_id = 1 + index
        slug = f"{STYLES[index % len(STYLES)].lower()}{101 + index}"
        title = f"{STYLES[index % len(STYLES)]} {TOPICS[rng.randrange(len(TOPICS))]} {101 + index}"
        channels = tuple(channel_id + n for n in range(1 + segments_per_course // 8))
        channel_id += len(channels)
        segments = []
        for number in range(segments_per_course):
            segment_id += 1
            lesson = LESSONS[number % len(LESSONS)]
            video = (
                None
                if no_video_every and (number + 1) % no_video_every == 0
                else f"mp4:{slug}/lesson_{number + 1:02d}"
            )
            segments.append(
                SampleSegment(segment_id, channels[number % len(channels)], video, lesson)
            )
        catalogue.append(SampleCourse(course_id, title, channels, tuple(segments)))
    return catalogue


def write_snapshot(path: Path, catalogue: list[SampleCourse]) -> Path:
    """Write `catalogue` as a snapshot with the contract's tables (and a few extra columns)."""
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(
            """
            CREATE TABLE courses (id INTEGER PRIMARY KEY, title TEXT, author TEXT);
            CREATE TABLE channels (id INTEGER PRIMARY KEY, courseid INTEGER, name TEXT);
            CREATE TABLE segments (id INTEGER PRIMARY KEY, channel_id INTEGER, video TEXT,
                                   title TEXT, runtime INTEGER);
            """
        )
        for course in catalogue:
            conn.execute(
                "INSERT INTO courses (id, title, author) VALUES (?, ?, 'tfbulk sample')",
                (course.course_id, course.title),
            )
            conn.executemany(
                "INSERT INTO channels (id, courseid, name) VALUES (?, ?, 'Lessons')",
                [(channel, course.course_id) for channel in course.channels],
            )
            conn.executemany(
                "INSERT INTO segments (id, channel_id, video, title, runtime) "
                "VALUES (?, ?, ?, ?, 0)",
                [(s.segment_id, s.channel_id, s.video, s.title) for s in course.segments],
            )
    conn.close()
    return path
