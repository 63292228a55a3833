"""The `nudge` command: the one front door (up, demo, api, dataflow, replay)."""
