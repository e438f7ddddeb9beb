"""The embedded tiled catalog (SQLite plus files) and how runs are written into it."""
