"""Pictures for people: training curves (matplotlib or the terminal) and the progress display."""
