"""Evidence: the recorder, the typed manifest, the summary, sealing, the bundle, its signature and timestamp, replay."""
