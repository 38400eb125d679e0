"""`python -m tfbulk` runs the CLI, so tests and cron can call it without the script."""

from tfbulk.entry import main

main()
