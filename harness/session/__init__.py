"""The pytest face of a run: options, items, the processes' progress, live services and collects, the live view."""
